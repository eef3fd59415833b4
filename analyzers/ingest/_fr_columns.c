/*
 * Flight-recorder dumps (pickle or JSON) -> column buffers, without a Python object per entry.
 *
 * A flight-recorder dump is a dict whose "entries" list holds thousands of dicts of plain
 * values. Python's unpickler (or JSON decoder) spends most of a dump's parse creating those
 * dicts, strings and ints, and the parser then spends as much again reading them back into
 * columns. This module reads the pickle opcodes (or the JSON text) itself, building its values
 * in a private arena (no reference counts, no hashing), and writes the entries' fields straight
 * into Arrow-layout buffers that the Python side wraps without copying.
 *
 * It is a fast path only. Only the pickle opcodes that plain data needs are understood (no
 * GLOBAL, REDUCE, BUILD, persistent ids, ...: nothing is ever imported or called), JSON only as
 * orjson would accept it, and every value must have exactly the type the Python path converts
 * directly. On anything else -- an unknown opcode, damaged or truncated input, a field of an
 * unexpected type, a cycle, text the Python path would repair -- the decoder returns None and
 * the caller reads the dump the Python way, which reports the problem. So this code never
 * decides what a bad dump means; it only recognises good ones. Every read is bounds-checked.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* ---- arena values ---------------------------------------------------------------------- */

enum { K_NONE, K_BOOL, K_INT, K_FLOAT, K_STR, K_LIST, K_TUPLE, K_DICT };

typedef struct Node Node;
struct Node {
    uint8_t kind;
    uint8_t visiting;  /* cycle guard while converting to Python objects */
    uint8_t surrogate; /* K_STR holding an encoded surrogate (Python accepts it, Arrow does not) */
    int8_t slot;       /* K_STR as an entry key: its slot + 3 once looked up (keys are memoized) */
    union {
        int64_t i;
        double f;
        struct {
            const char *p;
            Py_ssize_t n;
        } s;
        struct {
            Node **items; /* DICT: key, value, key, value, ... */
            Py_ssize_t n, cap;
        } seq;
    } u;
    PyObject *py; /* converted object (containers only), borrowed from Machine.keep */
};

#define CHUNK_NODES 4096
#define INTERN_SLOTS 1024 /* a power of two: slots are picked by masking a hash */
#define INTERN_MAX 64     /* longer strings are rarely repeated field values */
#define JSON_HINT_DEPTH 8
#define JSON_HINT_ITEMS 128 /* keys and values per object whose text is remembered (entries: ~44) */

/* Where a key's or value's text lies in the input: [start, end). */
typedef struct {
    Py_ssize_t start, end;
} Span;

typedef struct Chunk {
    struct Chunk *next;
    Py_ssize_t used;
    Node nodes[CHUNK_NODES];
} Chunk;

/* Item arrays of lists, tuples and dicts, bump-allocated: thousands of small lists per dump,
 * none freed before the end, so no malloc/free per list. */
#define ITEM_CHUNK 32768

typedef struct ItemChunk {
    struct ItemChunk *next;
    Py_ssize_t used, cap;
    Node *items[];
} ItemChunk;

/* Unescaped JSON strings, each in its own allocation (escapes are rare in dumps). */
typedef struct TextChunk {
    struct TextChunk *next;
    char text[];
} TextChunk;

typedef struct {
    const unsigned char *data;
    Py_ssize_t len, pos;
    Chunk *chunks;
    ItemChunk *item_chunks;
    PyObject *keep; /* converted containers, alive until the end of decode_with() */
    TextChunk *texts;
    Node **stack;
    Py_ssize_t sp, stack_cap;
    Py_ssize_t *marks;
    Py_ssize_t nmarks, marks_cap;
    Node **memo;
    Py_ssize_t memo_cap, memo_len;
    /* JSON: short plain strings seen before (keys, states, names), shared like the pickle memo
     * shares them: one node each, and an entry key's slot is looked up once per dump. */
    Node *interned[INTERN_SLOTS];
    /* JSON: the last object read at each shallow depth, and a text of each of its keys and
     * values. Entries repeat their keys in the same order and many of their values: the next
     * object at that depth is sized like it, and a key or value spelled exactly as the previous
     * object's item at the same place is that item, its node shared (no scan, no hash, no
     * number read). A shared item keeps the text it was first read from (the same bytes), so
     * only items read anew record where their text lies. */
    Node *previous_object[JSON_HINT_DEPTH];
    Span item_text[JSON_HINT_DEPTH][JSON_HINT_ITEMS];
    /* Objects read so far: a value that holds one is never shared. Like orjson's, each of its
     * objects stays its own, and the stacks are told apart by their frame objects' identity. */
    Py_ssize_t objects_read;
} Machine;

static Node NONE_NODE = {K_NONE, 0, 0, 0, {0}, NULL};
static Node TRUE_NODE = {K_BOOL, 0, 0, 0, {.i = 1}, NULL};
static Node FALSE_NODE = {K_BOOL, 0, 0, 0, {.i = 0}, NULL};

static Node *new_node(Machine *m, uint8_t kind) {
    if (m->chunks == NULL || m->chunks->used == CHUNK_NODES) {
        Chunk *c = (Chunk *)PyMem_RawMalloc(sizeof(Chunk));
        if (c == NULL) return NULL;
        c->next = m->chunks;
        c->used = 0;
        m->chunks = c;
    }
    Node *n = &m->chunks->nodes[m->chunks->used++];
    memset(n, 0, sizeof(Node));
    n->kind = kind;
    return n;
}

static Node **alloc_items(Machine *m, Py_ssize_t count) {
    ItemChunk *c = m->item_chunks;
    if (c == NULL || c->cap - c->used < count) {
        Py_ssize_t cap = count > ITEM_CHUNK / 4 ? count : ITEM_CHUNK;
        if ((size_t)cap > (PY_SSIZE_T_MAX - sizeof(ItemChunk)) / sizeof(Node *)) return NULL;
        ItemChunk *fresh = (ItemChunk *)PyMem_RawMalloc(sizeof(ItemChunk) + (size_t)cap * sizeof(Node *));
        if (fresh == NULL) return NULL;
        fresh->used = 0;
        fresh->cap = cap;
        if (cap == ITEM_CHUNK || c == NULL) {
            fresh->next = c;
            m->item_chunks = fresh;
        } else { /* a one-off big array: keep filling the current chunk afterwards */
            fresh->next = c->next;
            c->next = fresh;
        }
        c = fresh;
    }
    Node **items = c->items + c->used;
    c->used += count;
    return items;
}

/* Room for ``extra`` more items (grown by doubling; the old array is simply left behind). */
static int seq_grow(Machine *m, Node *container, Py_ssize_t extra) {
    Py_ssize_t need = container->u.seq.n + extra;
    Py_ssize_t cap = container->u.seq.cap ? container->u.seq.cap * 2 : 4;
    if (cap < need) cap = need;
    Node **items = alloc_items(m, cap);
    if (items == NULL) return -1;
    if (container->u.seq.n) memcpy(items, container->u.seq.items, (size_t)container->u.seq.n * sizeof(Node *));
    container->u.seq.items = items;
    container->u.seq.cap = cap;
    return 0;
}

static inline int seq_reserve(Machine *m, Node *container, Py_ssize_t extra) {
    return container->u.seq.n + extra <= container->u.seq.cap ? 0 : seq_grow(m, container, extra);
}

static void machine_free(Machine *m) {
    Chunk *c = m->chunks;
    while (c != NULL) {
        Chunk *next = c->next;
        PyMem_RawFree(c);
        c = next;
    }
    ItemChunk *ic = m->item_chunks;
    while (ic != NULL) {
        ItemChunk *next = ic->next;
        PyMem_RawFree(ic);
        ic = next;
    }
    Py_XDECREF(m->keep);
    TextChunk *text = m->texts;
    while (text != NULL) {
        TextChunk *next = text->next;
        PyMem_RawFree(text);
        text = next;
    }
    PyMem_RawFree(m->stack);
    PyMem_RawFree(m->marks);
    PyMem_RawFree(m->memo);
}

/* ---- the opcode interpreter ------------------------------------------------------------ */

static int push(Machine *m, Node *n) {
    if (n == NULL) return -1;
    if (m->sp == m->stack_cap) {
        Py_ssize_t cap = m->stack_cap ? m->stack_cap * 2 : 256;
        Node **stack = (Node **)PyMem_RawRealloc(m->stack, (size_t)cap * sizeof(Node *));
        if (stack == NULL) return -1;
        m->stack = stack;
        m->stack_cap = cap;
    }
    m->stack[m->sp++] = n;
    return 0;
}

static int push_mark(Machine *m) {
    if (m->nmarks == m->marks_cap) {
        Py_ssize_t cap = m->marks_cap ? m->marks_cap * 2 : 64;
        Py_ssize_t *marks = (Py_ssize_t *)PyMem_RawRealloc(m->marks, (size_t)cap * sizeof(Py_ssize_t));
        if (marks == NULL) return -1;
        m->marks = marks;
        m->marks_cap = cap;
    }
    m->marks[m->nmarks++] = m->sp;
    return 0;
}

/* The lowest stack slot the current opcode may consume: the innermost mark (the Python
 * unpickler's "fence"); popping below it is a damaged stream there, so it is here too. */
static Py_ssize_t fence(const Machine *m) { return m->nmarks ? m->marks[m->nmarks - 1] : 0; }

/* Index of the innermost mark (the first stack slot above it), or -1 without one. */
static Py_ssize_t pop_mark(Machine *m) {
    if (m->nmarks == 0) return -1;
    return m->marks[--m->nmarks];
}

/* Memo indices beyond this are refused (the Python unpickler would allocate for them). */
#define MEMO_LIMIT ((Py_ssize_t)1 << 24)

static int memo_grow(Machine *m, Py_ssize_t index);

static inline int memo_put(Machine *m, Py_ssize_t index) {
    if (m->sp <= fence(m) || index < 0 || index >= MEMO_LIMIT) return -1;
    if (index >= m->memo_cap && memo_grow(m, index) < 0) return -1;
    if (m->memo[index] == NULL) m->memo_len++;
    m->memo[index] = m->stack[m->sp - 1];
    return 0;
}

static int memo_grow(Machine *m, Py_ssize_t index) {
    Py_ssize_t cap = m->memo_cap ? m->memo_cap : 256;
    while (cap <= index) cap *= 2;
    Node **memo = (Node **)PyMem_RawRealloc(m->memo, (size_t)cap * sizeof(Node *));
    if (memo == NULL) return -1;
    memset(memo + m->memo_cap, 0, (size_t)(cap - m->memo_cap) * sizeof(Node *));
    m->memo = memo;
    m->memo_cap = cap;
    return 0;
}

static Node *memo_get(Machine *m, Py_ssize_t index) {
    if (index < 0 || index >= m->memo_cap) return NULL;
    return m->memo[index];
}

#define NEED(count)                                                                              \
    do {                                                                                         \
        if ((count) < 0 || m->len - m->pos < (Py_ssize_t)(count)) return NULL;                  \
    } while (0)

/* Eight bytes at ``p`` as one (unaligned) load. */
static inline uint64_t load8(const unsigned char *p) {
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

#define BYTES_OF(b) (0x0101010101010101ULL * (uint64_t)(b))

static inline uint64_t read_le(const unsigned char *p, int count) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /* The common widths (opcode arguments, 8-byte LONG1 timestamps) as one load. */
    if (count == 1) return p[0];
    if (count == 4) {
        uint32_t word;
        memcpy(&word, p, 4);
        return word;
    }
    if (count == 8) return load8(p);
#endif
    uint64_t value = 0;
    for (int i = count - 1; i >= 0; i--) value = (value << 8) | p[i];
    return value;
}

/* An opcode's argument: the next ``count`` bytes, little-endian, consumed (NULL when cut short). */
#define TAKE_LE(var, count)                                                                      \
    do {                                                                                         \
        NEED(count);                                                                             \
        (var) = read_le(m->data + m->pos, (count));                                              \
        m->pos += (count);                                                                       \
    } while (0)

/* UTF-8 as Python's unpickler decodes it ("surrogatepass"): 0 invalid, 1 valid, 2 valid with an
 * encoded surrogate. */
static int utf8_check(const unsigned char *p, Py_ssize_t n) {
    int surrogate = 0;
    Py_ssize_t i = 0;
    while (i < n) {
        /* Eight ASCII bytes at a time: dumps are almost all ASCII (names, paths, member lists). */
        if (n - i >= 8 && (load8(p + i) & BYTES_OF(0x80)) == 0) {
            i += 8;
            continue;
        }
        unsigned char c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        int extra;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) {
            extra = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            extra = 2;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED && i + 1 < n && p[i + 1] >= 0xA0) surrogate = 1;
        } else if (c >= 0xF0 && c <= 0xF4) {
            extra = 3;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else {
            return 0;
        }
        if (n - i <= extra) return 0;
        if (p[i + 1] < lo || p[i + 1] > hi) return 0;
        for (int k = 2; k <= extra; k++)
            if (p[i + k] < 0x80 || p[i + k] > 0xBF) return 0;
        i += extra + 1;
    }
    return surrogate ? 2 : 1;
}

static Node *make_str(Machine *m, Py_ssize_t size) {
    NEED(size);
    int utf8 = utf8_check(m->data + m->pos, size);
    if (utf8 == 0) return NULL;
    Node *n = new_node(m, K_STR);
    if (n == NULL) return NULL;
    n->surrogate = utf8 == 2;
    n->u.s.p = (const char *)m->data + m->pos;
    n->u.s.n = size;
    m->pos += size;
    return n;
}

/* Little-endian two's complement of ``size`` bytes (LONG1/LONG4); only what fits in int64. */
static Node *make_long(Machine *m, Py_ssize_t size) {
    NEED(size);
    if (size > 8) return NULL;
    Node *n = new_node(m, K_INT);
    if (n == NULL) return NULL;
    uint64_t raw = size ? read_le(m->data + m->pos, (int)size) : 0;
    if (size > 0 && size < 8 && (m->data[m->pos + size - 1] & 0x80)) raw |= ~(uint64_t)0 << (8 * size);
    n->u.i = (int64_t)raw;
    m->pos += size;
    return n;
}

static Node *make_int(Machine *m, int64_t value) {
    Node *n = new_node(m, K_INT);
    if (n != NULL) n->u.i = value;
    return n;
}

/* Pops the items above the innermost mark into a new container of ``kind``. */
static Node *collect(Machine *m, uint8_t kind) {
    Py_ssize_t start = pop_mark(m);
    if (start < 0 || start > m->sp) return NULL;
    Py_ssize_t count = m->sp - start;
    if (kind == K_DICT && count % 2) return NULL;
    Node *n = new_node(m, kind);
    if (n == NULL) return NULL;
    if (count) {
        n->u.seq.items = alloc_items(m, count);
        if (n->u.seq.items == NULL) return NULL;
        memcpy(n->u.seq.items, m->stack + start, (size_t)count * sizeof(Node *));
        n->u.seq.n = n->u.seq.cap = count;
    }
    m->sp = start;
    return n;
}

static Node *small_tuple(Machine *m, Py_ssize_t count) {
    if (m->sp - fence(m) < count) return NULL;
    Node *n = new_node(m, K_TUPLE);
    if (n == NULL) return NULL;
    n->u.seq.items = alloc_items(m, count);
    if (n->u.seq.items == NULL) return NULL;
    memcpy(n->u.seq.items, m->stack + m->sp - count, (size_t)count * sizeof(Node *));
    n->u.seq.n = n->u.seq.cap = count;
    m->sp -= count;
    return n;
}

/* Keys the Python unpickler could hash (a list or dict key would raise there). */
static int hashable_key(const Node *key) {
    return key->kind != K_LIST && key->kind != K_DICT && key->kind != K_TUPLE;
}

/* Appends the stack items from ``start`` into the list just below them. */
static int extend_list(Machine *m, Py_ssize_t start) {
    if (start <= fence(m) || start > m->sp) return -1;
    Node *list = m->stack[start - 1];
    if (list->kind != K_LIST || seq_reserve(m, list, m->sp - start) < 0) return -1;
    for (Py_ssize_t i = start; i < m->sp; i++) list->u.seq.items[list->u.seq.n++] = m->stack[i];
    m->sp = start;
    return 0;
}

static int set_items(Machine *m, Py_ssize_t start) {
    if (start <= fence(m) || start > m->sp || (m->sp - start) % 2) return -1;
    Node *dict = m->stack[start - 1];
    if (dict->kind != K_DICT || seq_reserve(m, dict, m->sp - start) < 0) return -1;
    for (Py_ssize_t i = start; i < m->sp; i += 2) {
        if (!hashable_key(m->stack[i])) return -1;
        dict->u.seq.items[dict->u.seq.n++] = m->stack[i];
        dict->u.seq.items[dict->u.seq.n++] = m->stack[i + 1];
    }
    m->sp = start;
    return 0;
}

/* Runs the opcodes to STOP; the unpickled value, or NULL for anything not understood. */
static Node *run(Machine *m) {
    while (m->pos < m->len) {
        unsigned char op = m->data[m->pos++];
        Node *n = NULL;
        Py_ssize_t start;
        uint64_t arg;
        switch (op) {
        case 0x80: /* PROTO */
            TAKE_LE(arg, 1);
            if (arg > 5) return NULL;
            continue;
        case 0x95: /* FRAME: a length prefix only; the data follows in line */
            TAKE_LE(arg, 8);
            if (arg > (uint64_t)(m->len - m->pos)) return NULL;
            continue;
        case '.': /* STOP */
            if (m->sp <= fence(m)) return NULL;
            return m->stack[m->sp - 1];
        case '(': /* MARK */
            if (push_mark(m) < 0) return NULL;
            continue;
        case '0': /* POP */
            if (m->nmarks && m->marks[m->nmarks - 1] == m->sp) {
                m->nmarks--;
            } else {
                if (m->sp < 1) return NULL;
                m->sp--;
            }
            continue;
        case '1': /* POP_MARK */
            start = pop_mark(m);
            if (start < 0 || start > m->sp) return NULL;
            m->sp = start;
            continue;
        case '2': /* DUP */
            if (m->sp <= fence(m)) return NULL;
            n = m->stack[m->sp - 1];
            break;
        case 'N':
            n = &NONE_NODE;
            break;
        case 0x88: /* NEWTRUE */
            n = &TRUE_NODE;
            break;
        case 0x89: /* NEWFALSE */
            n = &FALSE_NODE;
            break;
        case 'J': /* BININT */
            TAKE_LE(arg, 4);
            n = make_int(m, (int32_t)(uint32_t)arg);
            break;
        case 'K': /* BININT1 */
            TAKE_LE(arg, 1);
            n = make_int(m, (int64_t)arg);
            break;
        case 'M': /* BININT2 */
            TAKE_LE(arg, 2);
            n = make_int(m, (int64_t)arg);
            break;
        case 0x8a: /* LONG1 */
            TAKE_LE(arg, 1);
            n = make_long(m, (Py_ssize_t)arg);
            break;
        case 0x8b: /* LONG4 */
            TAKE_LE(arg, 4);
            if ((int32_t)(uint32_t)arg < 0) return NULL;
            n = make_long(m, (Py_ssize_t)arg);
            break;
        case 'G': { /* BINFLOAT: big-endian IEEE 754 double */
            NEED(8);
            uint64_t raw = 0;
            for (int i = 0; i < 8; i++) raw = (raw << 8) | m->data[m->pos + i];
            m->pos += 8;
            n = new_node(m, K_FLOAT);
            if (n != NULL) memcpy(&n->u.f, &raw, sizeof(double));
            break;
        }
        case 0x8c: /* SHORT_BINUNICODE */
            TAKE_LE(arg, 1);
            n = make_str(m, (Py_ssize_t)arg);
            break;
        case 'X': /* BINUNICODE */
            TAKE_LE(arg, 4);
            n = make_str(m, (Py_ssize_t)arg);
            break;
        case 0x8d: /* BINUNICODE8 */
            TAKE_LE(arg, 8);
            if (arg > (uint64_t)PY_SSIZE_T_MAX) return NULL;
            n = make_str(m, (Py_ssize_t)arg);
            break;
        case ']': /* EMPTY_LIST */
            n = new_node(m, K_LIST);
            break;
        case '}': /* EMPTY_DICT */
            n = new_node(m, K_DICT);
            break;
        case ')': /* EMPTY_TUPLE */
            n = new_node(m, K_TUPLE);
            break;
        case 'l': /* LIST */
            n = collect(m, K_LIST);
            break;
        case 't': /* TUPLE */
            n = collect(m, K_TUPLE);
            break;
        case 'd': /* DICT */
            n = collect(m, K_DICT);
            if (n != NULL)
                for (Py_ssize_t i = 0; i < n->u.seq.n; i += 2)
                    if (!hashable_key(n->u.seq.items[i])) return NULL;
            break;
        case 0x85: /* TUPLE1 */
        case 0x86: /* TUPLE2 */
        case 0x87: /* TUPLE3 */
            n = small_tuple(m, op - 0x84);
            break;
        case 'a': /* APPEND */
            if (extend_list(m, m->sp - 1) < 0) return NULL;
            continue;
        case 'e': /* APPENDS */
            if (extend_list(m, pop_mark(m)) < 0) return NULL;
            continue;
        case 's': /* SETITEM */
            if (set_items(m, m->sp - 2) < 0) return NULL;
            continue;
        case 'u': /* SETITEMS */
            if (set_items(m, pop_mark(m)) < 0) return NULL;
            continue;
        case 'q': /* BINPUT */
            TAKE_LE(arg, 1);
            if (memo_put(m, (Py_ssize_t)arg) < 0) return NULL;
            continue;
        case 'r': /* LONG_BINPUT */
            TAKE_LE(arg, 4);
            if (memo_put(m, (Py_ssize_t)arg) < 0) return NULL;
            continue;
        case 0x94: /* MEMOIZE */
            if (memo_put(m, m->memo_len) < 0) return NULL;
            continue;
        case 'h': /* BINGET */
            TAKE_LE(arg, 1);
            n = memo_get(m, (Py_ssize_t)arg);
            break;
        case 'j': /* LONG_BINGET */
            TAKE_LE(arg, 4);
            n = memo_get(m, (Py_ssize_t)arg);
            break;
        default: /* anything else (globals, reduce, bytes, text opcodes...): the Python path */
            return NULL;
        }
        if (push(m, n) < 0) return NULL;
    }
    return NULL; /* no STOP: truncated */
}

/* ---- arena values -> Python objects (the small parts of a dump) ------------------------ */

#define MAX_DEPTH 200

static PyObject *to_python(PyObject *keep, Node *n, int depth) {
    switch (n->kind) {
    case K_NONE:
        Py_RETURN_NONE;
    case K_BOOL:
        return PyBool_FromLong((long)n->u.i);
    case K_INT:
        return PyLong_FromLongLong(n->u.i);
    case K_FLOAT:
        return PyFloat_FromDouble(n->u.f);
    case K_STR:
        return PyUnicode_DecodeUTF8(n->u.s.p, n->u.s.n, "surrogatepass");
    default:
        break;
    }
    if (n->py != NULL) {
        Py_INCREF(n->py);
        return n->py;
    }
    if (n->visiting || depth > MAX_DEPTH) return NULL; /* a cycle or absurd nesting: the Python path */
    n->visiting = 1;
    PyObject *result = NULL;
    Py_ssize_t count = n->u.seq.n;
    if (n->kind == K_DICT) {
        result = PyDict_New();
        for (Py_ssize_t i = 0; result != NULL && i < count; i += 2) {
            PyObject *key = to_python(keep, n->u.seq.items[i], depth + 1);
            PyObject *value = key ? to_python(keep, n->u.seq.items[i + 1], depth + 1) : NULL;
            if (value == NULL || PyDict_SetItem(result, key, value) < 0) Py_CLEAR(result);
            Py_XDECREF(key);
            Py_XDECREF(value);
        }
    } else {
        result = n->kind == K_LIST ? PyList_New(count) : PyTuple_New(count);
        for (Py_ssize_t i = 0; result != NULL && i < count; i++) {
            PyObject *item = to_python(keep, n->u.seq.items[i], depth + 1);
            if (item == NULL) {
                Py_CLEAR(result);
            } else if (n->kind == K_LIST) {
                PyList_SET_ITEM(result, i, item);
            } else {
                PyTuple_SET_ITEM(result, i, item);
            }
        }
    }
    n->visiting = 0;
    if (result != NULL) {
        if (PyList_Append(keep, result) < 0) {
            Py_DECREF(result);
            return NULL;
        }
        n->py = result;
    }
    return result;
}

/* ---- column builders ------------------------------------------------------------------- */

typedef struct {
    char *p;
    Py_ssize_t n, cap;
} Buffer;

static int buf_reserve(Buffer *b, Py_ssize_t extra) {
    if (b->n + extra <= b->cap) return 0;
    Py_ssize_t cap = b->cap ? b->cap : 1024;
    while (cap < b->n + extra) cap *= 2;
    char *p = (char *)PyMem_RawRealloc(b->p, (size_t)cap);
    if (p == NULL) return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

static inline int buf_put(Buffer *b, const void *src, Py_ssize_t size) {
    if (size == 0) return 0; /* an empty string: nothing to copy, and the buffer may not exist yet */
    if (b->n + size > b->cap && buf_reserve(b, size) < 0) return -1;
    memcpy(b->p + b->n, src, (size_t)size);
    b->n += size;
    return 0;
}

static inline int buf_i32(Buffer *b, int32_t v) { return buf_put(b, &v, 4); }

static PyObject *buf_bytes(Buffer *b) { return PyBytes_FromStringAndSize(b->p ? b->p : "", b->n); }

/* Validity, one byte per value while building; packed into Arrow's LSB bitmap at the end. */
typedef struct {
    Buffer bytes;
    Py_ssize_t length, nulls;
} Validity;

static inline int valid_push(Validity *v, int valid) {
    char flag = (char)(valid != 0);
    if (buf_put(&v->bytes, &flag, 1) < 0) return -1;
    v->nulls += !valid;
    v->length++;
    return 0;
}

/* Booleans, one byte per value -> Arrow's bit-packed layout. */
static PyObject *packed_bits(const Buffer *bytes) {
    PyObject *packed = PyBytes_FromStringAndSize(NULL, (bytes->n + 7) / 8);
    if (packed == NULL) return NULL;
    unsigned char *bits = (unsigned char *)PyBytes_AS_STRING(packed);
    memset(bits, 0, (size_t)(bytes->n + 7) / 8);
    for (Py_ssize_t i = 0; i < bytes->n; i++)
        if (bytes->p[i]) bits[i / 8] |= (unsigned char)(1 << (i % 8));
    return packed;
}

/* (validity bitmap or None, null count) */
static PyObject *validity_pair(Validity *v) {
    if (v->nulls == 0) return Py_BuildValue("(On)", Py_None, (Py_ssize_t)0);
    PyObject *bits = packed_bits(&v->bytes);
    if (bits == NULL) return NULL;
    return Py_BuildValue("(Nn)", bits, v->nulls);
}

/* Strings: int32 offsets + UTF-8 data (checked by the caller, as Arrow requires). */
typedef struct {
    Buffer offsets, data;
} Strings;

static int strings_init(Strings *s) { return buf_i32(&s->offsets, 0); }

static int strings_push(Strings *s, const Node *n) {
    if (n != NULL && n->kind == K_STR) {
        if (n->surrogate) return -1;
        if (s->data.n + n->u.s.n > INT32_MAX) return -1;
        if (buf_put(&s->data, n->u.s.p, n->u.s.n) < 0) return -1;
    }
    return buf_i32(&s->offsets, (int32_t)s->data.n);
}

typedef enum { F_INT, F_FLOAT, F_BOOL, F_STR, F_SHAPES, F_STRS } FieldType;

typedef struct {
    const char *name;
    FieldType type;
} FieldSpec;

/* The entry fields read directly; the order is the Python side's. */
static const FieldSpec FIELDS[] = {
    {"record_id", F_INT},
    {"pg_id", F_INT},
    {"collective_seq_id", F_INT},
    {"p2p_seq_id", F_INT},
    {"op_id", F_INT},
    {"timeout_ms", F_INT},
    {"duration_ms", F_FLOAT},
    {"time_created_ns", F_INT},
    {"time_discovered_started_ns", F_INT},
    {"time_discovered_completed_ns", F_INT},
    {"state", F_STR},
    {"retired", F_BOOL},
    {"is_p2p", F_BOOL},
    {"thread_name", F_STR},
    {"thread_id", F_STR},
    {"profiling_name", F_STR},
    {"input_sizes", F_SHAPES},
    {"output_sizes", F_SHAPES},
    {"input_dtypes", F_STRS},
    {"output_dtypes", F_STRS},
};
#define N_FIELDS ((int)(sizeof(FIELDS) / sizeof(FIELDS[0])))
/* Further keys the decoder looks for: the group, the stack and the older spellings. */
enum { SLOT_GROUP = N_FIELDS, SLOT_FRAMES, SLOT_ALIAS, N_SLOTS };

typedef struct {
    Validity valid;
    Buffer values;       /* F_INT, F_FLOAT: 8 bytes each; F_BOOL: bits */
    Strings strings;     /* F_STR; F_STRS: the items */
    Buffer list_offsets; /* F_SHAPES, F_STRS: outer list offsets */
    Buffer inner_offsets; /* F_SHAPES: inner list offsets */
    Buffer numel;         /* F_SHAPES: per entry, the elements of all its tensors (int64) */
} Column;

static int column_init(Column *c, FieldType type) {
    if (type == F_STR || type == F_STRS)
        if (strings_init(&c->strings) < 0) return -1;
    if (type == F_SHAPES || type == F_STRS)
        if (buf_i32(&c->list_offsets, 0) < 0) return -1;
    if (type == F_SHAPES)
        if (buf_i32(&c->inner_offsets, 0) < 0) return -1;
    return 0;
}

static void column_free(Column *c) {
    PyMem_RawFree(c->valid.bytes.p);
    PyMem_RawFree(c->values.p);
    PyMem_RawFree(c->strings.offsets.p);
    PyMem_RawFree(c->strings.data.p);
    PyMem_RawFree(c->list_offsets.p);
    PyMem_RawFree(c->inner_offsets.p);
    PyMem_RawFree(c->numel.p);
}

static int is_seq(const Node *n) { return n->kind == K_LIST || n->kind == K_TUPLE; }

/* Whether ``key`` is the string ``text`` (of ``size`` bytes). */
static int key_is(const Node *key, const char *text, Py_ssize_t size) {
    return key->kind == K_STR && key->u.s.n == size && memcmp(key->u.s.p, text, (size_t)size) == 0;
}

/* Appends one entry's value (NULL: key absent); -1 when its type needs the Python path. */
static int column_push(Column *c, FieldType type, const Node *n) {
    int present = n != NULL && n->kind != K_NONE;
    if (valid_push(&c->valid, present) < 0) return -1;
    switch (type) {
    case F_INT:
    case F_FLOAT: {
        int64_t raw = 0;
        if (present) {
            if (n->kind != (type == F_INT ? K_INT : K_FLOAT)) return -1;
            memcpy(&raw, &n->u, 8);
        }
        return buf_put(&c->values, &raw, 8);
    }
    case F_BOOL: {
        if (present && n->kind != K_BOOL) return -1;
        char flag = (char)(present && n->u.i);
        return buf_put(&c->values, &flag, 1);
    }
    case F_STR:
        if (present && n->kind != K_STR) return -1;
        return strings_push(&c->strings, present ? n : NULL);
    case F_STRS:
        if (present) {
            if (!is_seq(n)) return -1;
            for (Py_ssize_t i = 0; i < n->u.seq.n; i++) {
                if (n->u.seq.items[i]->kind != K_STR) return -1;
                if (strings_push(&c->strings, n->u.seq.items[i]) < 0) return -1;
            }
        }
        return buf_i32(&c->list_offsets, (int32_t)(c->strings.offsets.n / 4 - 1));
    case F_SHAPES: {
        /* numel: the sum over tensors of the product of their dimensions, in wrapping int64
         * arithmetic like flight_recorder.numel_series (0 for null entries, masked by validity). */
        uint64_t numel = 0;
        if (present) {
            if (!is_seq(n)) return -1;
            for (Py_ssize_t i = 0; i < n->u.seq.n; i++) {
                const Node *shape = n->u.seq.items[i];
                if (!is_seq(shape)) return -1;
                uint64_t product = 1;
                for (Py_ssize_t j = 0; j < shape->u.seq.n; j++) {
                    if (shape->u.seq.items[j]->kind != K_INT) return -1;
                    if (buf_put(&c->values, &shape->u.seq.items[j]->u.i, 8) < 0) return -1;
                    product *= (uint64_t)shape->u.seq.items[j]->u.i;
                }
                numel += product;
                if (c->values.n / 8 > INT32_MAX) return -1;
                if (buf_i32(&c->inner_offsets, (int32_t)(c->values.n / 8)) < 0) return -1;
            }
        }
        if (buf_put(&c->numel, &numel, 8) < 0) return -1;
        if (c->inner_offsets.n / 4 - 1 > INT32_MAX) return -1;
        return buf_i32(&c->list_offsets, (int32_t)(c->inner_offsets.n / 4 - 1));
    }
    }
    return -1;
}

/* The column as a tuple of buffers for pyarrow.Array.from_buffers on the Python side. */
static PyObject *column_result(Column *c, FieldType type) {
    PyObject *validity = validity_pair(&c->valid);
    if (validity == NULL) return NULL;
    switch (type) {
    case F_INT:
    case F_FLOAT:
        return Py_BuildValue("(NN)", validity, buf_bytes(&c->values));
    case F_BOOL:
        return Py_BuildValue("(NN)", validity, packed_bits(&c->values));
    case F_STR:
        return Py_BuildValue("(NNN)", validity, buf_bytes(&c->strings.offsets), buf_bytes(&c->strings.data));
    case F_STRS:
        return Py_BuildValue("(NNNN)", validity, buf_bytes(&c->list_offsets), buf_bytes(&c->strings.offsets),
                             buf_bytes(&c->strings.data));
    case F_SHAPES:
        return Py_BuildValue("(NNNNN)", validity, buf_bytes(&c->list_offsets), buf_bytes(&c->inner_offsets),
                             buf_bytes(&c->values), buf_bytes(&c->numel));
    }
    Py_DECREF(validity);
    return NULL;
}

static Py_ssize_t FIELD_LENGTHS[N_FIELDS]; /* strlen of each FIELDS name, set at import */

/* Which slot a string key names, or -2 for a key of no interest. */
static int slot_lookup(const Node *key) {
    for (int i = 0; i < N_FIELDS; i++)
        if (key_is(key, FIELDS[i].name, FIELD_LENGTHS[i])) return i;
    if (key_is(key, "process_group", 13)) return SLOT_GROUP;
    if (key_is(key, "frames", 6)) return SLOT_FRAMES;
    if (key_is(key, "seq_id", 6) || key_is(key, "sizes", 5)) return SLOT_ALIAS;
    return -2;
}

/* Which slot a key names: -1 not a string, -2 a string of no interest (cached on the key node). */
static int slot_of(Node *key) {
    if (key->kind != K_STR) return -1;
    if (key->slot == 0) key->slot = (int8_t)(slot_lookup(key) + 3);
    return key->slot - 3;
}

/* ---- distinct stacks: entries share frame dicts through the memo ----------------------- */

typedef struct {
    Node *frames; /* first list seen with this sequence of frame nodes */
    uint64_t hash;
} StackSlot;

typedef struct {
    StackSlot *slots;
    int32_t *codes; /* slot -> code */
    Py_ssize_t cap, count;
    Node **distinct; /* code -> frames list */
} StackTable;

static uint64_t frames_hash(const Node *frames) {
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)frames->u.seq.n;
    for (Py_ssize_t i = 0; i < frames->u.seq.n; i++) {
        h ^= (uint64_t)(uintptr_t)frames->u.seq.items[i];
        h *= 1099511628211ULL;
        h ^= h >> 29;
    }
    return h;
}

static int same_frames(const Node *a, const Node *b) {
    return a->u.seq.n == b->u.seq.n &&
           (a->u.seq.n == 0 || memcmp(a->u.seq.items, b->u.seq.items, (size_t)a->u.seq.n * sizeof(Node *)) == 0);
}

static int stacks_grow(StackTable *t) {
    Py_ssize_t cap = t->cap ? t->cap * 2 : 64;
    StackSlot *slots = (StackSlot *)PyMem_RawCalloc((size_t)cap, sizeof(StackSlot));
    int32_t *codes = (int32_t *)PyMem_RawMalloc((size_t)cap * sizeof(int32_t));
    Node **distinct = (Node **)PyMem_RawRealloc(t->distinct, (size_t)cap * sizeof(Node *));
    if (slots == NULL || codes == NULL || distinct == NULL) {
        PyMem_RawFree(slots);
        PyMem_RawFree(codes);
        if (distinct != NULL) t->distinct = distinct;
        return -1;
    }
    t->distinct = distinct;
    for (Py_ssize_t i = 0; i < t->cap; i++) {
        if (t->slots[i].frames == NULL) continue;
        Py_ssize_t at = (Py_ssize_t)(t->slots[i].hash & (uint64_t)(cap - 1));
        while (slots[at].frames != NULL) at = (at + 1) & (cap - 1);
        slots[at] = t->slots[i];
        codes[at] = t->codes[i];
    }
    PyMem_RawFree(t->slots);
    PyMem_RawFree(t->codes);
    t->slots = slots;
    t->codes = codes;
    t->cap = cap;
    return 0;
}

/* The code of this frames list (None frames have their own code, like any distinct value). */
static int32_t stack_code(StackTable *t, Node *frames) {
    if ((t->count + 1) * 2 > t->cap && stacks_grow(t) < 0) return -1;
    uint64_t h = frames->kind == K_NONE ? 0 : frames_hash(frames);
    Py_ssize_t at = (Py_ssize_t)(h & (uint64_t)(t->cap - 1));
    while (t->slots[at].frames != NULL) {
        Node *seen = t->slots[at].frames;
        if (t->slots[at].hash == h && seen->kind == frames->kind && (frames->kind == K_NONE || same_frames(seen, frames)))
            return t->codes[at];
        at = (at + 1) & (t->cap - 1);
    }
    if (t->count >= INT32_MAX) return -1;
    t->slots[at].frames = frames;
    t->slots[at].hash = h;
    t->codes[at] = (int32_t)t->count;
    t->distinct[t->count] = frames;
    return (int32_t)t->count++;
}

/* ---- from the decoded dump to the result ------------------------------------------------- */

static Node *dict_get(const Node *dict, const char *name) {
    Node *found = NULL;
    for (Py_ssize_t i = 0; i < dict->u.seq.n; i += 2)
        if (key_is(dict->u.seq.items[i], name, (Py_ssize_t)strlen(name)))
            found = dict->u.seq.items[i + 1]; /* the last value of a repeated key wins, as in Python */
    return found;
}

/* The top-level dict without "entries", as a Python dict. */
static PyObject *top_without_entries(Machine *m, Node *top) {
    PyObject *result = PyDict_New();
    for (Py_ssize_t i = 0; result != NULL && i < top->u.seq.n; i += 2) {
        Node *key = top->u.seq.items[i];
        if (key_is(key, "entries", 7)) continue;
        PyObject *k = to_python(m->keep, key, 1);
        PyObject *v = k ? to_python(m->keep, top->u.seq.items[i + 1], 1) : NULL;
        if (v == NULL || PyDict_SetItem(result, k, v) < 0) Py_CLEAR(result);
        Py_XDECREF(k);
        Py_XDECREF(v);
    }
    return result;
}

typedef struct {
    Column columns[N_FIELDS];
    Column group_name, group_desc; /* process_group's first two items, as string columns */
    Buffer stack_codes;
    StackTable stacks;
} Builders;

static void builders_free(Builders *b) {
    for (int i = 0; i < N_FIELDS; i++) column_free(&b->columns[i]);
    column_free(&b->group_name);
    column_free(&b->group_desc);
    PyMem_RawFree(b->stack_codes.p);
    PyMem_RawFree(b->stacks.slots);
    PyMem_RawFree(b->stacks.codes);
    PyMem_RawFree(b->stacks.distinct);
}

/* One entry into the builders; -1 when it needs the Python path. */
static int add_entry(Builders *b, const Node *entry) {
    Node *slots[N_SLOTS] = {NULL};
    if (entry->kind != K_DICT) return -1;
    for (Py_ssize_t i = 0; i < entry->u.seq.n; i += 2) {
        int slot = slot_of(entry->u.seq.items[i]);
        if (slot >= 0) slots[slot] = entry->u.seq.items[i + 1];
    }
    if (slots[SLOT_ALIAS] != NULL) return -1; /* older spellings: the Python path reads them */
    for (int i = 0; i < N_FIELDS; i++)
        if (column_push(&b->columns[i], FIELDS[i].type, slots[i]) < 0) return -1;

    /* process_group: a (name, desc, ...) sequence of strings or None; anything else, Python. */
    Node *group = slots[SLOT_GROUP];
    const Node *name = NULL, *desc = NULL;
    if (group != NULL && group->kind != K_NONE) {
        if (!is_seq(group) || group->u.seq.n < 2) return -1;
        for (Py_ssize_t i = 0; i < group->u.seq.n; i++) {
            const Node *item = group->u.seq.items[i];
            if ((item->kind != K_STR && item->kind != K_NONE) || (item->kind == K_STR && item->surrogate)) return -1;
        }
        name = group->u.seq.items[0];
        desc = group->u.seq.items[1];
    }
    if (column_push(&b->group_name, F_STR, name) < 0 || column_push(&b->group_desc, F_STR, desc) < 0) return -1;

    /* frames: a list of frame dicts (or None); identical stacks share their frame nodes. */
    Node *frames = slots[SLOT_FRAMES] ? slots[SLOT_FRAMES] : &NONE_NODE;
    if (frames->kind != K_NONE) {
        if (frames->kind != K_LIST) return -1;
        for (Py_ssize_t i = 0; i < frames->u.seq.n; i++)
            if (frames->u.seq.items[i]->kind != K_DICT) return -1;
    }
    int32_t code = stack_code(&b->stacks, frames);
    if (code < 0) return -1;
    return buf_i32(&b->stack_codes, code);
}

static PyObject *build_result(Machine *m, Node *top, Node *entries, Builders *b) {
    Py_ssize_t count = entries->u.seq.n;
    for (int i = 0; i < N_FIELDS; i++)
        if (column_init(&b->columns[i], FIELDS[i].type) < 0) return NULL;
    if (column_init(&b->group_name, F_STR) < 0 || column_init(&b->group_desc, F_STR) < 0) return NULL;
    for (Py_ssize_t i = 0; i < count; i++)
        if (add_entry(b, entries->u.seq.items[i]) < 0) return NULL;

    PyObject *columns = PyDict_New();
    if (columns == NULL) return NULL;
    for (int i = 0; i < N_FIELDS; i++) {
        PyObject *buffers = column_result(&b->columns[i], FIELDS[i].type);
        if (buffers == NULL || PyDict_SetItemString(columns, FIELDS[i].name, buffers) < 0) {
            Py_XDECREF(buffers);
            Py_DECREF(columns);
            return NULL;
        }
        Py_DECREF(buffers);
    }
    PyObject *distinct = PyList_New(b->stacks.count);
    for (Py_ssize_t i = 0; distinct != NULL && i < b->stacks.count; i++) {
        PyObject *stack = to_python(m->keep, b->stacks.distinct[i], 1);
        if (stack == NULL) {
            Py_CLEAR(distinct);
        } else {
            PyList_SET_ITEM(distinct, i, stack);
        }
    }
    PyObject *top_dict = distinct ? top_without_entries(m, top) : NULL;
    PyObject *names = top_dict ? column_result(&b->group_name, F_STR) : NULL;
    PyObject *descs = names ? column_result(&b->group_desc, F_STR) : NULL;
    if (descs == NULL) {
        Py_XDECREF(names);
        Py_DECREF(columns);
        Py_XDECREF(distinct);
        Py_XDECREF(top_dict);
        return NULL;
    }
    return Py_BuildValue("(NnN(NN)(NN))", top_dict, count, columns, names, descs, buf_bytes(&b->stack_codes),
                         distinct);
}

/* ---- JSON: the same arena values from torch's _dump_fr_trace_json text -------------------- */

/* Room for one unescaped string, freed with the machine. */
static char *alloc_text(Machine *m, Py_ssize_t size) {
    TextChunk *chunk = (TextChunk *)PyMem_RawMalloc(sizeof(TextChunk) + (size_t)size + 1);
    if (chunk == NULL) return NULL;
    chunk->next = m->texts;
    m->texts = chunk;
    return chunk->text;
}

#define JSON_MAX_DEPTH 512

static inline void json_ws(Machine *m) {
    /* Compact dumps have no whitespace: one comparison (every JSON space is <= ' '). */
    if (m->pos < m->len && m->data[m->pos] > ' ') return;
    while (m->pos < m->len) {
        unsigned char c = m->data[m->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        m->pos++;
    }
}

static int hex4(const unsigned char *p, uint32_t *out) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (uint32_t)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

/* Whether any of the 8 bytes of ``w`` equals ``b`` / is below ``b`` (b <= 128): exact for "any",
 * which is all the string scan asks (the bit positions may be off after the first hit). */
static inline uint64_t any_byte_is(uint64_t w, unsigned char b) {
    uint64_t x = w ^ BYTES_OF(b);
    return (x - BYTES_OF(1)) & ~x & BYTES_OF(0x80);
}
static inline uint64_t any_byte_below(uint64_t w, unsigned char b) {
    return (w - BYTES_OF(b)) & ~w & BYTES_OF(0x80);
}

/* A string after its opening quote. Declines what orjson would refuse (raw control characters,
 * invalid UTF-8, lone surrogates): the Python path then decides what that text means. */
static Node *json_string(Machine *m) {
    Py_ssize_t start = m->pos, end = m->pos;
    int escaped = 0;
    unsigned char high = 0; /* any byte >= 0x80: only then can the UTF-8 be invalid */
    /* Eight bytes at a time up to the first quote, backslash or control character (most of a
     * JSON dump's bytes are plain string text); the byte loop below takes it from there. */
    while (m->len - end >= 8) {
        uint64_t w = load8(m->data + end);
        if (any_byte_is(w, '"') | any_byte_is(w, '\\') | any_byte_below(w, 0x20)) break;
        if (w & BYTES_OF(0x80)) high = 0x80;
        end += 8;
    }
    while (end < m->len) {
        unsigned char c = m->data[end];
        if (c == '"') break;
        if (c < 0x20) return NULL;
        high |= c;
        if (c == '\\') {
            escaped = 1;
            end++;
        }
        end++;
    }
    if (end >= m->len) return NULL;
    m->pos = end + 1;
    if (!escaped) {
        const unsigned char *text = m->data + start;
        Py_ssize_t size = end - start;
        Node **shared = NULL;
        if (high & 0x80) {
            if (utf8_check(text, size) != 1) return NULL;
        } else if (size <= INTERN_MAX) {
            /* Hashed by length and first and last 8 bytes: different strings that agree there
             * only share a slot (compared in full below), never a node. */
            uint64_t head = 0, tail = 0;
            size_t part = size < 8 ? (size_t)size : 8;
            memcpy(&head, text, part);
            memcpy(&tail, text + size - (Py_ssize_t)part, part);
            uint64_t h = head * 0x9E3779B97F4A7C15ULL ^ (tail + (uint64_t)size) * 0xC2B2AE3D27D4EB4FULL;
            shared = &m->interned[(h ^ (h >> 31)) & (INTERN_SLOTS - 1)];
            if (*shared != NULL && (*shared)->u.s.n == size && memcmp((*shared)->u.s.p, text, (size_t)size) == 0)
                return *shared;
        }
        Node *n = new_node(m, K_STR);
        if (n == NULL) return NULL;
        n->u.s.p = (const char *)text;
        n->u.s.n = size;
        if (shared != NULL) *shared = n;
        return n;
    }
    Node *n = new_node(m, K_STR);
    if (n == NULL) return NULL;
    /* Unescaping never lengthens: \uXXXX (6 bytes) is at most 3 UTF-8 bytes, a pair (12) 4. */
    char *out = alloc_text(m, end - start);
    if (out == NULL) return NULL;
    Py_ssize_t size = 0;
    for (Py_ssize_t i = start; i < end;) {
        unsigned char c = m->data[i];
        if (c != '\\') {
            out[size++] = (char)c;
            i++;
            continue;
        }
        if (i + 1 >= end) return NULL;
        unsigned char e = m->data[i + 1];
        i += 2;
        switch (e) {
        case '"': out[size++] = '"'; continue;
        case '\\': out[size++] = '\\'; continue;
        case '/': out[size++] = '/'; continue;
        case 'b': out[size++] = '\b'; continue;
        case 'f': out[size++] = '\f'; continue;
        case 'n': out[size++] = '\n'; continue;
        case 'r': out[size++] = '\r'; continue;
        case 't': out[size++] = '\t'; continue;
        case 'u': break;
        default: return NULL;
        }
        uint32_t code;
        if (end - i < 4 || hex4(m->data + i, &code) < 0) return NULL;
        i += 4;
        if (code >= 0xD800 && code <= 0xDBFF) {
            uint32_t low;
            if (end - i < 6 || m->data[i] != '\\' || m->data[i + 1] != 'u' || hex4(m->data + i + 2, &low) < 0)
                return NULL;
            if (low < 0xDC00 || low > 0xDFFF) return NULL;
            i += 6;
            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
        } else if (code >= 0xDC00 && code <= 0xDFFF) {
            return NULL;
        }
        if (code < 0x80) {
            out[size++] = (char)code;
        } else if (code < 0x800) {
            out[size++] = (char)(0xC0 | (code >> 6));
            out[size++] = (char)(0x80 | (code & 0x3F));
        } else if (code < 0x10000) {
            out[size++] = (char)(0xE0 | (code >> 12));
            out[size++] = (char)(0x80 | ((code >> 6) & 0x3F));
            out[size++] = (char)(0x80 | (code & 0x3F));
        } else {
            out[size++] = (char)(0xF0 | (code >> 18));
            out[size++] = (char)(0x80 | ((code >> 12) & 0x3F));
            out[size++] = (char)(0x80 | ((code >> 6) & 0x3F));
            out[size++] = (char)(0x80 | (code & 0x3F));
        }
    }
    if (utf8_check((const unsigned char *)out, size) != 1) return NULL;
    n->u.s.p = out;
    n->u.s.n = size;
    return n;
}

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* Eight ASCII digits at ``p`` as their value, or -1 when any of the eight is not a digit.
 * Timestamps have 19 digits: two steps of eight instead of sixteen of one. */
static inline int64_t eight_digits(const unsigned char *p) {
    uint64_t w = load8(p);
    if ((((w & BYTES_OF(0xF0)) | (((w + BYTES_OF(0x06)) & BYTES_OF(0xF0)) >> 4))) != BYTES_OF(0x33)) return -1;
    w -= BYTES_OF('0');
    w = w * 10 + (w >> 8); /* little-endian: each byte pair's two digits as one value */
    w = (((w & 0x000000FF000000FFULL) * (100 + (1000000ULL << 32))) +
         (((w >> 16) & 0x000000FF000000FFULL) * (1 + (10000ULL << 32)))) >>
        32;
    return (int64_t)(w & 0xFFFFFFFFULL);
}

#ifdef __SIZEOF_INT128__
/* mantissa x 10^scale (|scale| <= 19, mantissa < 2^64, not 0) rounded to the nearest double, ties
 * to even, as strtod rounds it. Exact integer arithmetic in 128 bits: the quotient (or product)
 * has at least 54 significant bits, the remainder says whether anything was cut below them. The
 * result is always a normal double here, so scaling by a power of two is exact. Python writes
 * a float's shortest repr, up to 17 digits: most such values are beyond the 2^53 of the plain
 * fast path, and strtod costs some 2,000 instructions each. */
static double scaled_exactly(uint64_t mantissa, int scale) {
    static const uint64_t POW10_INT[20] = {1ULL,
                                           10ULL,
                                           100ULL,
                                           1000ULL,
                                           10000ULL,
                                           100000ULL,
                                           1000000ULL,
                                           10000000ULL,
                                           100000000ULL,
                                           1000000000ULL,
                                           10000000000ULL,
                                           100000000000ULL,
                                           1000000000000ULL,
                                           10000000000000ULL,
                                           100000000000000ULL,
                                           1000000000000000ULL,
                                           10000000000000000ULL,
                                           100000000000000000ULL,
                                           1000000000000000000ULL,
                                           10000000000000000000ULL};
    unsigned __int128 q;
    int power_of_two = 0, inexact = 0;
    if (scale >= 0) {
        q = (unsigned __int128)mantissa * POW10_INT[scale];
    } else {
        /* The mantissa's top bit moved to bit 127, then divided: a quotient of >= 64 bits. */
        int shift = 64 + __builtin_clzll(mantissa);
        unsigned __int128 numerator = (unsigned __int128)mantissa << shift;
        uint64_t divisor = POW10_INT[-scale];
        q = numerator / divisor;
        inexact = numerator % divisor != 0;
        power_of_two = -shift;
    }
    uint64_t high = (uint64_t)(q >> 64), low = (uint64_t)q;
    int bits = high ? 128 - __builtin_clzll(high) : 64 - __builtin_clzll(low);
    if (bits <= 53) return ldexp((double)low, power_of_two); /* exact: a small product */
    int cut = bits - 53;
    uint64_t kept = (uint64_t)(q >> cut);
    unsigned __int128 rest = q & ((((unsigned __int128)1) << cut) - 1);
    unsigned __int128 half = ((unsigned __int128)1) << (cut - 1);
    if (rest > half || (rest == half && (inexact || (kept & 1)))) {
        kept++;
        if (kept == ((uint64_t)1 << 53)) {
            kept >>= 1;
            cut++;
        }
    }
    return ldexp((double)kept, cut + power_of_two);
}
#endif

/* A number as JSON spells it: an int64 when it has no fraction or exponent (others decline),
 * else a double rounded as Python's float() rounds it (strtod is correctly rounded). */
static Node *json_number(Machine *m) {
    Py_ssize_t start = m->pos, i = m->pos;
    int negative = 0, is_float = 0;
    if (i < m->len && m->data[i] == '-') {
        negative = 1;
        i++;
    }
    if (i >= m->len || !is_digit(m->data[i])) return NULL;
    /* The integer part's value is summed while scanning it (most numbers are integers). */
    uint64_t magnitude = 0;
    Py_ssize_t digits_start = i;
    if (m->data[i] == '0') {
        i++;
    } else {
        int64_t eight;
        while (m->len - i >= 8 && (eight = eight_digits(m->data + i)) >= 0) {
            magnitude = magnitude * 100000000ULL + (uint64_t)eight;
            i += 8;
        }
        while (i < m->len && is_digit(m->data[i])) {
            magnitude = magnitude * 10 + (uint64_t)(m->data[i] - '0');
            i++;
        }
    }
    /* 19 digits always fit in 64 bits; longer ones are summed again, checked. */
    int overflow = 0;
    if (i - digits_start > 19) {
        magnitude = 0;
        for (Py_ssize_t k = digits_start; k < i && !overflow; k++) {
            uint64_t digit = (uint64_t)(m->data[k] - '0');
            overflow = magnitude > (UINT64_MAX - digit) / 10;
            magnitude = magnitude * 10 + digit;
        }
    }
    if (i < m->len && m->data[i] == '.') {
        is_float = 1;
        i++;
        if (i >= m->len || !is_digit(m->data[i])) return NULL;
        while (i < m->len && is_digit(m->data[i])) i++;
    }
    if (i < m->len && (m->data[i] == 'e' || m->data[i] == 'E')) {
        is_float = 1;
        i++;
        if (i < m->len && (m->data[i] == '+' || m->data[i] == '-')) i++;
        if (i >= m->len || !is_digit(m->data[i])) return NULL;
        while (i < m->len && is_digit(m->data[i])) i++;
    }
    m->pos = i;
    if (!is_float) {
        if (overflow || magnitude > (uint64_t)INT64_MAX + (uint64_t)negative) return NULL;
        return make_int(m, negative ? (int64_t)(0 - magnitude) : (int64_t)magnitude);
    }
    /* Most floats (durations) have few digits: the mantissa and the power of ten are then both
     * exact doubles and one IEEE multiplication or division rounds correctly (Clinger's fast
     * path), as strtod would. Longer or larger ones go through strtod. */
    static const double POW10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                   1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    uint64_t mantissa = 0;
    int digits = 0, fraction = 0, seen_dot = 0, fast = 1;
    Py_ssize_t k = start + negative;
    for (; k < i && m->data[k] != 'e' && m->data[k] != 'E'; k++) {
        if (m->data[k] == '.') {
            seen_dot = 1;
            continue;
        }
        if (++digits > 19) {
            fast = 0;
            break;
        }
        mantissa = mantissa * 10 + (uint64_t)(m->data[k] - '0');
        fraction += seen_dot;
    }
    int exponent = 0;
    if (fast && k < i) { /* at 'e' */
        int exponent_negative = 0;
        k++;
        if (m->data[k] == '+' || m->data[k] == '-') exponent_negative = m->data[k++] == '-';
        for (; k < i && exponent < 1000; k++) exponent = exponent * 10 + (m->data[k] - '0');
        if (exponent_negative) exponent = -exponent;
    }
    int scale = exponent - fraction;
    if (fast && mantissa <= ((uint64_t)1 << 53) && scale >= -22 && scale <= 22) {
        double value = (double)mantissa;
        value = scale < 0 ? value / POW10[-scale] : value * POW10[scale];
        Node *n = new_node(m, K_FLOAT);
        if (n != NULL) n->u.f = negative ? -value : value;
        return n;
    }
#ifdef __SIZEOF_INT128__
    if (fast && mantissa != 0 && scale >= -19 && scale <= 19) {
        double value = scaled_exactly(mantissa, scale);
        Node *n = new_node(m, K_FLOAT);
        if (n != NULL) n->u.f = negative ? -value : value;
        return n;
    }
#endif
    char text[64];
    if (i - start >= (Py_ssize_t)sizeof(text)) return NULL;
    memcpy(text, m->data + start, (size_t)(i - start));
    text[i - start] = '\0';
    Node *n = new_node(m, K_FLOAT);
    if (n != NULL) n->u.f = PyOS_string_to_double(text, NULL, NULL);
    if (n != NULL && PyErr_Occurred()) return NULL;
    return n;
}

/* 0xff in the first ``n`` bytes (in memory order) of an 8-byte load at ``TEXT_MASKS + 8 - n``. */
static const unsigned char TEXT_MASKS[16] = {255, 255, 255, 255, 255, 255, 255, 255};

/* Whether the ``size`` bytes at ``a`` and ``b`` are equal. Items are mostly short (keys, ids,
 * numbers, timestamps): up to 32 bytes are compared a word at a time, which needs 32 readable
 * bytes at both; a libc call costs more than the comparison itself there. */
static inline int same_text(const unsigned char *a, const unsigned char *b, Py_ssize_t size, Py_ssize_t room) {
    if (room < 32 || size > 32) return memcmp(a, b, (size_t)size) == 0;
    if (size <= 8) return ((load8(a) ^ load8(b)) & load8(TEXT_MASKS + 8 - size)) == 0;
    /* The last word first: numbers that differ (times, counters) mostly differ at the end. */
    if (load8(a + size - 8) != load8(b + size - 8)) return 0;
    for (Py_ssize_t i = 0; i < size - 8; i += 8)
        if (load8(a + i) != load8(b + i)) return 0;
    return 1;
}

/* The previous object's item (key or value) at ``index``, whose text is ``before[index]``, when
 * the text at the current position spells it exactly and ends where it ended (a number followed
 * by more digits is another number); NULL otherwise. Its text was read as a whole JSON string or
 * value, so equal text is an equal item. The remembered text lies before the current position,
 * so whatever is readable from here is readable there. */
static inline Node *json_previous_item(Machine *m, const Node *previous, const Span *before, Py_ssize_t index) {
    if (previous == NULL || index >= previous->u.seq.n || index >= JSON_HINT_ITEMS) return NULL;
    Py_ssize_t size = before[index].end - before[index].start;
    Py_ssize_t room = m->len - m->pos;
    if (size <= 0 || room <= size || !same_text(m->data + m->pos, m->data + before[index].start, size, room))
        return NULL;
    unsigned char after = m->data[m->pos + size];
    if (after != ',' && after != '}' && after != ']' && after != ':' && after > ' ') return NULL;
    m->pos += size;
    return previous->u.seq.items[index];
}

static Node *json_value(Machine *m, int depth) {
    json_ws(m);
    if (m->pos >= m->len || depth > JSON_MAX_DEPTH) return NULL;
    unsigned char c = m->data[m->pos];
    if (c == '{' || c == '[') {
        int object = c == '{';
        Node *n = new_node(m, object ? K_DICT : K_LIST);
        if (n == NULL) return NULL;
        m->objects_read += object;
        m->pos++;
        json_ws(m);
        if (m->pos < m->len && m->data[m->pos] == (object ? '}' : ']')) {
            m->pos++;
            return n;
        }
        int hinted = object && depth < JSON_HINT_DEPTH;
        const Node *previous = hinted ? m->previous_object[depth] : NULL;
        /* The previous object's item texts; this object's replace them as its items are read. */
        Span *texts = hinted ? m->item_text[depth] : NULL;
        if (previous != NULL && seq_reserve(m, n, previous->u.seq.n) < 0) return NULL;
        for (;;) {
            Node *key = NULL;
            if (object) {
                json_ws(m);
                if (m->pos >= m->len || m->data[m->pos] != '"') return NULL;
                key = json_previous_item(m, previous, texts, n->u.seq.n);
                if (key == NULL) {
                    Py_ssize_t start = m->pos++;
                    key = json_string(m);
                    if (key == NULL) return NULL;
                    if (texts != NULL && n->u.seq.n < JSON_HINT_ITEMS)
                        texts[n->u.seq.n] = (Span){start, m->pos};
                }
                json_ws(m);
                if (m->pos >= m->len || m->data[m->pos] != ':') return NULL;
                m->pos++;
                json_ws(m);
            }
            Node *value = json_previous_item(m, previous, texts, n->u.seq.n + 1);
            if (value == NULL) {
                Py_ssize_t start = m->pos, objects_before = m->objects_read;
                value = json_value(m, depth + 1);
                if (value == NULL) return NULL;
                /* A value holding objects gets no text: it is never shared. */
                if (texts != NULL && n->u.seq.n + 1 < JSON_HINT_ITEMS)
                    texts[n->u.seq.n + 1] = (Span){start, m->objects_read == objects_before ? m->pos : start};
            }
            if (seq_reserve(m, n, object ? 2 : 1) < 0) return NULL;
            if (object) n->u.seq.items[n->u.seq.n++] = key;
            n->u.seq.items[n->u.seq.n++] = value;
            json_ws(m);
            if (m->pos >= m->len) return NULL;
            c = m->data[m->pos++];
            if (c == ',') continue;
            if (c == (object ? '}' : ']')) {
                if (hinted) m->previous_object[depth] = n;
                return n;
            }
            return NULL;
        }
    }
    if (c == '"') {
        m->pos++;
        return json_string(m);
    }
    if (c == '-' || is_digit(c)) return json_number(m);
    if (m->len - m->pos >= 4 && memcmp(m->data + m->pos, "null", 4) == 0) {
        m->pos += 4;
        return &NONE_NODE;
    }
    if (m->len - m->pos >= 4 && memcmp(m->data + m->pos, "true", 4) == 0) {
        m->pos += 4;
        return &TRUE_NODE;
    }
    if (m->len - m->pos >= 5 && memcmp(m->data + m->pos, "false", 5) == 0) {
        m->pos += 5;
        return &FALSE_NODE;
    }
    return NULL; /* NaN, Infinity, anything else: the Python path */
}

/* The whole document: one value and nothing after it but whitespace. */
static Node *run_json(Machine *m) {
    Node *top = json_value(m, 0);
    if (top == NULL) return NULL;
    json_ws(m);
    return m->pos == m->len ? top : NULL;
}

typedef Node *(*Reader)(Machine *m);

static PyObject *decode_with(PyObject *arg, Reader reader) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    Machine m;
    memset(&m, 0, sizeof(m));
    m.data = (const unsigned char *)view.buf;
    m.len = view.len;
    Builders b;
    memset(&b, 0, sizeof(b));
    PyObject *result = NULL;
    m.keep = PyList_New(0);
    Node *top = m.keep ? reader(&m) : NULL;
    if (top != NULL && top->kind == K_DICT) {
        Node *entries = dict_get(top, "entries");
        if (entries != NULL && entries->kind == K_LIST) result = build_result(&m, top, entries, &b);
    }
    builders_free(&b);
    machine_free(&m);
    PyBuffer_Release(&view);
    if (result == NULL) {
        if (PyErr_Occurred()) {
            if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError) && !PyErr_ExceptionMatches(PyExc_MemoryError) &&
                !PyErr_ExceptionMatches(PyExc_ValueError))
                return NULL;
            PyErr_Clear();
        }
        Py_RETURN_NONE;
    }
    return result;
}

PyDoc_STRVAR(decode_pickle_doc,
             "decode_pickle(data) -> tuple | None\n\n"
             "Decode a flight-recorder pickle (a dict with an 'entries' list of plain dicts) into\n"
             "(top-level dict without 'entries', entry count, {field: buffers},\n"
             "(name buffers, desc buffers), (stack codes, distinct stacks)). None when the dump needs\n"
             "the Python unpickler: anything but plain data, damage, or a field of an unexpected type.");

static PyObject *decode_pickle(PyObject *self, PyObject *arg) {
    (void)self;
    return decode_with(arg, run);
}

PyDoc_STRVAR(decode_json_doc,
             "decode_json(data) -> tuple | None\n\n"
             "decode_pickle() for a JSON dump (UTF-8 text of one object). None when the Python JSON\n"
             "path must read it: invalid UTF-8, NaN, integers beyond int64, damage, unexpected types.");

static PyObject *decode_json(PyObject *self, PyObject *arg) {
    (void)self;
    return decode_with(arg, run_json);
}

static PyMethodDef methods[] = {
    {"decode_pickle", decode_pickle, METH_O, decode_pickle_doc},
    {"decode_json", decode_json, METH_O, decode_json_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fr_columns",
    "Flight-recorder dumps decoded straight into column buffers (a fast path; see decode_pickle()).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fr_columns(void) {
    for (int i = 0; i < N_FIELDS; i++) FIELD_LENGTHS[i] = (Py_ssize_t)strlen(FIELDS[i].name);
    return PyModule_Create(&module);
}
