/* A compact keyed table of records, for the reference data.

   ``Table(factory, names, kinds, defaults=None)`` maps a str key to a
   record built by ``factory(**{names[0]: key, names[1]: ..., ...},
   **defaults)``: ``defaults`` are fields not stored, the same in every
   record. The record is not kept: its fields are stored packed, and a look-up builds a new record.
   ``kinds`` gives one letter a field after the key:

     'o'  any hashable value, kept once per distinct value (ids of banks,
          platforms, roles, licence lists); 4 bytes a row;
     's'  a str or None, kept as UTF-8 in the table's arena (ids that are
          mostly distinct, such as an account's owner); 8 bytes a row plus
          the text;
     'i'  an int that fits 63 bits, or None; 8 bytes a row.

   Keys are kept as UTF-8 in the arena too, so a row of an account (key,
   owner 's', bank, role and platform 'o', opening time 'i') takes 40 bytes
   plus its two ids' text, against about 190 for a dict entry, a str key
   and a record. Rows live in fixed-size chunks and text in fixed-size
   blocks: nothing is moved or copied as the table grows but the index of
   4-byte slots. Rows are never removed; a key set again is updated in
   place. Lone surrogates (which JSON escapes can carry) are kept as they
   came, through "surrogatepass".

   Values 'o' that are equal but print apart (Decimal("0.1") and
   Decimal("0.10"), 1 and True) are kept apart: a value other than a str or
   None is keyed by its type and repr.

   Pickling keeps the rows, not the hash index (hashes of str differ
   between processes): the index is rebuilt on load. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define EMPTY_SLOT UINT32_MAX
#define CHUNK_ROWS 8192
#define BLOCK_BYTES (1 << 20)
#define NONE_INT INT64_MIN
#define MAX_FIELDS 16

typedef struct {
    PyObject_HEAD
    PyObject *factory;  /* called with keyword arguments */
    PyObject *names;    /* tuple of str: key field, then one per kind */
    PyObject *kwnames;  /* names, then the defaults' names: the vectorcall's keywords */
    PyObject *defaults; /* dict of fields not stored, passed as given, or None */
    PyObject *default_values; /* tuple: the defaults' values, in kwnames' order */
    PyObject *kinds;    /* str */
    PyObject *values;   /* list: the distinct 'o' values */
    PyObject *index_of; /* dict: value key -> index in values */
    int nfields;        /* fields after the key */
    char kind[MAX_FIELDS];
    uint32_t off[MAX_FIELDS]; /* byte offset of each field in a row */
    uint32_t row_size;
    /* rows */
    char **chunks;
    Py_ssize_t nchunks, chunks_cap;
    uint32_t count;
    /* text arena */
    char **blocks;
    Py_ssize_t nblocks, blocks_cap;
    size_t block_used, block_size, arena_bytes;
    /* index */
    uint32_t *slots;
    uint32_t mask; /* slots - 1 */
    /* the records built last, by key hash: hot keys (a platform's own
       accounts, banks) are not built again at each look-up */
    struct cached {
        PyObject *key;
        PyObject *record;
        uint32_t row;
        uint32_t hash;
    } *cache;
} Table;

#define CACHE_SIZE 512

/* A row: [key text pointer (8)][hash (4)][fields...], fields laid out by
   the offsets computed at creation (8-byte ones first). A text pointer
   points at a 4-byte length followed by the UTF-8 bytes. */
#define ROW(t, i) ((t)->chunks[(i) / CHUNK_ROWS] + (size_t)((i) % CHUNK_ROWS) * (t)->row_size)
#define ROW_KEY(r) (*(const char **)(r))
#define ROW_HASH(r) (*(uint32_t *)((r) + 8))

/* Text in the arena: a length of one byte (under 255), or 255 then four
   bytes, then the UTF-8 bytes. */
static uint32_t
text_len(const char *p)
{
    uint32_t n = (unsigned char)p[0];
    if (n == 255)
        memcpy(&n, p + 1, 4);
    return n;
}

static const char *
text_data(const char *p)
{
    return p + ((unsigned char)p[0] == 255 ? 5 : 1);
}

/* UTF-8 of a str, through "surrogatepass" when it holds lone surrogates.
   *owner receives a bytes object to release afterwards, or NULL. */
static const char *
utf8_of(PyObject *s, Py_ssize_t *n, PyObject **owner)
{
    *owner = NULL;
    const char *u = PyUnicode_AsUTF8AndSize(s, n);
    if (u != NULL)
        return u;
    if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError))
        return NULL;
    PyErr_Clear();
    PyObject *b = PyUnicode_AsEncodedString(s, "utf-8", "surrogatepass");
    if (b == NULL)
        return NULL;
    *owner = b;
    *n = PyBytes_GET_SIZE(b);
    return PyBytes_AS_STRING(b);
}

static PyObject *
text_to_str(const char *p)
{
    return PyUnicode_DecodeUTF8(text_data(p), text_len(p), "surrogatepass");
}

static const char *
arena_put(Table *t, const char *data, Py_ssize_t n)
{
    if (n > (Py_ssize_t)UINT32_MAX - 5) {
        PyErr_SetString(PyExc_OverflowError, "text too long for a table");
        return NULL;
    }
    size_t head = n < 255 ? 1 : 5;
    size_t need = (size_t)n + head;
    char *dst;
    if (t->nblocks == 0 || t->block_used + need > t->block_size) {
        size_t size = need > BLOCK_BYTES ? need : BLOCK_BYTES;
        if (t->nblocks == t->blocks_cap) {
            Py_ssize_t cap = t->blocks_cap ? t->blocks_cap * 2 : 16;
            char **b = PyMem_Realloc(t->blocks, cap * sizeof(char *));
            if (b == NULL) {
                PyErr_NoMemory();
                return NULL;
            }
            t->blocks = b;
            t->blocks_cap = cap;
        }
        char *block = PyMem_RawMalloc(size);
        if (block == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        t->blocks[t->nblocks++] = block;
        t->block_used = 0;
        t->block_size = size;
        t->arena_bytes += size;
    }
    dst = t->blocks[t->nblocks - 1] + t->block_used;
    if (head == 1) {
        dst[0] = (char)n;
    } else {
        uint32_t n32 = (uint32_t)n;
        dst[0] = (char)255;
        memcpy(dst + 1, &n32, 4);
    }
    memcpy(dst + head, data, (size_t)n);
    t->block_used += need;
    return dst;
}

static int
text_equals(const char *p, const char *u, Py_ssize_t n)
{
    return text_len(p) == (uint32_t)n && memcmp(text_data(p), u, (size_t)n) == 0;
}

/* -- the index ---------------------------------------------------------- */

/* The slot holding ``u`` (hash h), or the empty slot where it would go. */
static uint32_t
find_slot(Table *t, uint32_t h, const char *u, Py_ssize_t n)
{
    uint32_t mask = t->mask;
    uint32_t i = h & mask;
    uint32_t perturb = h;
    for (;;) {
        uint32_t s = t->slots[i];
        if (s == EMPTY_SLOT)
            return i;
        const char *r = ROW(t, s);
        if (ROW_HASH(r) == h && text_equals(ROW_KEY(r), u, n))
            return i;
        perturb >>= 5;
        i = (i * 5 + perturb + 1) & mask;
    }
}

static int
resize_index(Table *t, uint32_t nslots)
{
    uint32_t *slots = PyMem_RawMalloc((size_t)nslots * sizeof(uint32_t));
    if (slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memset(slots, 0xff, (size_t)nslots * sizeof(uint32_t));
    PyMem_RawFree(t->slots);
    t->slots = slots;
    t->mask = nslots - 1;
    for (uint32_t row = 0; row < t->count; row++) {
        uint32_t h = ROW_HASH(ROW(t, row));
        uint32_t i = h & t->mask, perturb = h;
        while (t->slots[i] != EMPTY_SLOT) {
            perturb >>= 5;
            i = (i * 5 + perturb + 1) & t->mask;
        }
        t->slots[i] = row;
    }
    return 0;
}

/* Row number of ``key`` (a str), -1 when absent, -2 on error. */
static Py_ssize_t
lookup_hashed(Table *t, PyObject *key, Py_hash_t hash)
{
    Py_ssize_t n;
    PyObject *owner;
    const char *u = utf8_of(key, &n, &owner);
    if (u == NULL)
        return -2;
    uint32_t s = t->slots[find_slot(t, (uint32_t)hash, u, n)];
    Py_XDECREF(owner);
    return s == EMPTY_SLOT ? -1 : (Py_ssize_t)s;
}

static Py_ssize_t
lookup(Table *t, PyObject *key)
{
    if (!PyUnicode_Check(key))
        return -1;
    Py_hash_t hash = PyObject_Hash(key);
    if (hash == -1)
        return -2;
    return lookup_hashed(t, key, hash);
}

static PyObject *make_record(Table *t, uint32_t row, PyObject *key);

static void
cache_drop(Table *t, uint32_t row, uint32_t hash)
{
    struct cached *c = &t->cache[hash % CACHE_SIZE];
    if (c->record != NULL && c->row == row) {
        Py_CLEAR(c->key);
        Py_CLEAR(c->record);
    }
}

/* The record of ``key``; NULL without an error when absent. */
static PyObject *
cached_get(Table *t, PyObject *key)
{
    if (!PyUnicode_Check(key))
        return NULL;
    Py_hash_t hash = PyObject_Hash(key);
    if (hash == -1)
        return NULL;
    struct cached *c = &t->cache[(uint32_t)hash % CACHE_SIZE];
    if (c->record != NULL && c->hash == (uint32_t)hash) {
        if (c->key == key)
            return Py_NewRef(c->record);
        int eq = PyUnicode_Compare(c->key, key);
        if (eq == -1 && PyErr_Occurred())
            return NULL;
        if (eq == 0)
            return Py_NewRef(c->record);
    }
    Py_ssize_t row = lookup_hashed(t, key, hash);
    if (row < 0)
        return NULL;
    PyObject *rec = make_record(t, (uint32_t)row, key);
    if (rec == NULL)
        return NULL;
    Py_XSETREF(c->key, Py_NewRef(key));
    Py_XSETREF(c->record, Py_NewRef(rec));
    c->row = (uint32_t)row;
    c->hash = (uint32_t)hash;
    return rec;
}

/* -- fields ------------------------------------------------------------- */

static int
intern_value(Table *t, PyObject *v, uint32_t *out)
{
    PyObject *k;
    if (v == Py_None || PyUnicode_CheckExact(v)) {
        k = Py_NewRef(v);
    } else {
        PyObject *r = PyObject_Repr(v);
        if (r == NULL)
            return -1;
        k = PyTuple_Pack(2, (PyObject *)Py_TYPE(v), r);
        Py_DECREF(r);
        if (k == NULL)
            return -1;
    }
    PyObject *found = PyDict_GetItemWithError(t->index_of, k);
    if (found != NULL) {
        *out = (uint32_t)PyLong_AsUnsignedLong(found);
        Py_DECREF(k);
        return 0;
    }
    if (PyErr_Occurred()) {
        Py_DECREF(k);
        return -1;
    }
    Py_ssize_t idx = PyList_GET_SIZE(t->values);
    PyObject *num = PyLong_FromSsize_t(idx);
    int bad = num == NULL || PyDict_SetItem(t->index_of, k, num) < 0 ||
              PyList_Append(t->values, v) < 0;
    Py_XDECREF(num);
    Py_DECREF(k);
    if (bad)
        return -1;
    *out = (uint32_t)idx;
    return 0;
}

/* Stores ``v`` as field ``f`` of row ``r``. */
static int
put_field(Table *t, char *r, int f, PyObject *v)
{
    char *p = r + t->off[f];
    switch (t->kind[f]) {
    case 'o': {
        uint32_t idx;
        if (intern_value(t, v, &idx) < 0)
            return -1;
        memcpy(p, &idx, 4);
        return 0;
    }
    case 's': {
        const char *text = NULL;
        if (v != Py_None) {
            if (!PyUnicode_Check(v)) {
                PyErr_Format(PyExc_TypeError, "field %R must be a str or None, not %.100s",
                             PyTuple_GET_ITEM(t->names, f + 1), Py_TYPE(v)->tp_name);
                return -1;
            }
            /* The same text as before: kept where it is. */
            const char *old = *(const char **)p;
            Py_ssize_t n;
            PyObject *owner;
            const char *u = utf8_of(v, &n, &owner);
            if (u == NULL)
                return -1;
            if (old != NULL && text_equals(old, u, n)) {
                Py_XDECREF(owner);
                return 0;
            }
            text = arena_put(t, u, n);
            Py_XDECREF(owner);
            if (text == NULL)
                return -1;
        }
        memcpy(p, &text, sizeof text);
        return 0;
    }
    case 'i': {
        int64_t x = NONE_INT;
        if (v != Py_None) {
            if (!PyLong_Check(v)) {
                PyErr_Format(PyExc_TypeError, "field %R must be an int or None, not %.100s",
                             PyTuple_GET_ITEM(t->names, f + 1), Py_TYPE(v)->tp_name);
                return -1;
            }
            long long y = PyLong_AsLongLong(v);
            if (y == -1 && PyErr_Occurred())
                return -1;
            if (y == NONE_INT) {
                PyErr_SetString(PyExc_OverflowError, "int too small for a table field");
                return -1;
            }
            x = y;
        }
        memcpy(p, &x, 8);
        return 0;
    }
    }
    return 0;
}

static PyObject *
get_field(Table *t, const char *r, int f)
{
    const char *p = r + t->off[f];
    switch (t->kind[f]) {
    case 'o': {
        uint32_t idx;
        memcpy(&idx, p, 4);
        return Py_NewRef(PyList_GET_ITEM(t->values, idx));
    }
    case 's': {
        const char *text;
        memcpy(&text, p, sizeof text);
        if (text == NULL)
            Py_RETURN_NONE;
        return text_to_str(text);
    }
    default: {
        int64_t x;
        memcpy(&x, p, 8);
        if (x == NONE_INT)
            Py_RETURN_NONE;
        return PyLong_FromLongLong(x);
    }
    }
}

/* The record of row ``row``; ``key`` is its key when the caller has it. */
static PyObject *
make_record(Table *t, uint32_t row, PyObject *key)
{
    const char *r = ROW(t, row);
    PyObject *args[2 * MAX_FIELDS + 1];
    int filled = 0;
    PyObject *result = NULL;
    args[0] = key != NULL ? Py_NewRef(key) : text_to_str(ROW_KEY(r));
    if (args[0] == NULL)
        return NULL;
    filled = 1;
    for (int f = 0; f < t->nfields; f++) {
        args[f + 1] = get_field(t, r, f);
        if (args[f + 1] == NULL)
            goto done;
        filled++;
    }
    for (Py_ssize_t d = 0; d < PyTuple_GET_SIZE(t->default_values); d++)
        args[filled + d] = PyTuple_GET_ITEM(t->default_values, d); /* borrowed */
    result = PyObject_Vectorcall(t->factory, args, 0, t->kwnames);
done:
    for (int i = 0; i < filled; i++)
        Py_DECREF(args[i]);
    return result;
}

/* Sets ``key`` to the field values ``vals``. */
static int
table_set_values(Table *t, PyObject *key, PyObject **vals)
{
    if (!PyUnicode_Check(key)) {
        PyErr_Format(PyExc_TypeError, "table keys are str, not %.100s", Py_TYPE(key)->tp_name);
        return -1;
    }
    int rc = -1;
    Py_hash_t hash = PyObject_Hash(key);
    if (hash == -1)
        goto done;
    Py_ssize_t n;
    PyObject *owner;
    const char *u = utf8_of(key, &n, &owner);
    if (u == NULL)
        goto done;
    uint32_t h = (uint32_t)hash;
    uint32_t slot = find_slot(t, h, u, n);
    uint32_t row = t->slots[slot];
    if (row != EMPTY_SLOT) {
        Py_XDECREF(owner);
        /* Updated in place; a field that cannot be stored leaves the row
           as it was (fields are checked into a copy first). */
        char tmp[8 * (MAX_FIELDS + 2)];
        char *r = ROW(t, row);
        memcpy(tmp, r, t->row_size);
        for (int f = 0; f < t->nfields; f++)
            if (put_field(t, tmp, f, vals[f]) < 0)
                goto done;
        memcpy(r, tmp, t->row_size);
        cache_drop(t, row, h);
        rc = 0;
        goto done;
    }
    if (t->count >= EMPTY_SLOT - 1) {
        Py_XDECREF(owner);
        PyErr_SetString(PyExc_OverflowError, "table full");
        goto done;
    }
    char tmp[8 * (MAX_FIELDS + 2)];
    memset(tmp, 0, t->row_size);
    for (int f = 0; f < t->nfields; f++)
        if (put_field(t, tmp, f, vals[f]) < 0) {
            Py_XDECREF(owner);
            goto done;
        }
    const char *text = arena_put(t, u, n);
    Py_XDECREF(owner);
    if (text == NULL)
        goto done;
    memcpy(tmp, &text, sizeof text);
    memcpy(tmp + 8, &h, 4);
    row = t->count;
    if (row / CHUNK_ROWS >= (uint32_t)t->nchunks) {
        if (t->nchunks == t->chunks_cap) {
            Py_ssize_t cap = t->chunks_cap ? t->chunks_cap * 2 : 8;
            char **c = PyMem_Realloc(t->chunks, cap * sizeof(char *));
            if (c == NULL) {
                PyErr_NoMemory();
                goto done;
            }
            t->chunks = c;
            t->chunks_cap = cap;
        }
        char *chunk = PyMem_RawMalloc((size_t)t->row_size * CHUNK_ROWS);
        if (chunk == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        t->chunks[t->nchunks++] = chunk;
    }
    memcpy(ROW(t, row), tmp, t->row_size);
    t->slots[slot] = row;
    t->count++;
    /* At most two thirds full. */
    if ((uint64_t)t->count * 3 >= (uint64_t)(t->mask + 1) * 2) {
        if (resize_index(t, (t->mask + 1) * 2) < 0) {
            t->count--;
            t->slots[slot] = EMPTY_SLOT;
            goto done;
        }
    }
    rc = 0;
done:
    return rc;
}

/* Sets ``key`` to the fields of ``record`` (read by name). */
static int
table_set(Table *t, PyObject *key, PyObject *record)
{
    PyObject *vals[MAX_FIELDS];
    int got = 0, rc = -1;
    for (int f = 0; f < t->nfields; f++) {
        vals[f] = PyObject_GetAttr(record, PyTuple_GET_ITEM(t->names, f + 1));
        if (vals[f] == NULL)
            goto done;
        got++;
    }
    rc = table_set_values(t, key, vals);
done:
    for (int i = 0; i < got; i++)
        Py_DECREF(vals[i]);
    return rc;
}

/* -- the type ----------------------------------------------------------- */

static int
Table_init(Table *t, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"factory", "names", "kinds", "defaults", NULL};
    PyObject *factory, *names, *kinds, *defaults = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO!U|O:Table", kwlist, &factory, &PyTuple_Type,
                                     &names, &kinds, &defaults))
        return -1;
    if (defaults != Py_None && (!PyDict_Check(defaults) || PyDict_GET_SIZE(defaults) > MAX_FIELDS)) {
        PyErr_Format(PyExc_TypeError, "Table defaults must be a dict of at most %d fields, or None",
                     MAX_FIELDS);
        return -1;
    }
    if (t->factory != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Table already initialised");
        return -1;
    }
    Py_ssize_t nk = PyUnicode_GET_LENGTH(kinds);
    if (nk > MAX_FIELDS || PyTuple_GET_SIZE(names) != nk + 1) {
        PyErr_Format(PyExc_ValueError,
                     "Table takes a key name and one name per kind (at most %d), got %zd names "
                     "for %zd kinds",
                     MAX_FIELDS, PyTuple_GET_SIZE(names), nk);
        return -1;
    }
    for (Py_ssize_t i = 0; i <= nk; i++) {
        if (!PyUnicode_Check(PyTuple_GET_ITEM(names, i))) {
            PyErr_SetString(PyExc_TypeError, "Table names must be str");
            return -1;
        }
    }
    t->nfields = (int)nk;
    for (int f = 0; f < nk; f++) {
        Py_UCS4 c = PyUnicode_READ_CHAR(kinds, f);
        if (c != 'o' && c != 's' && c != 'i') {
            PyErr_Format(PyExc_ValueError, "unknown field kind %R (o, s or i)", kinds);
            return -1;
        }
        t->kind[f] = (char)c;
    }
    /* [key pointer 0..8][hash 8..12][4-byte fields][pad][8-byte fields] */
    uint32_t pos = 12;
    for (int f = 0; f < nk; f++)
        if (t->kind[f] == 'o') {
            t->off[f] = pos;
            pos += 4;
        }
    pos = (pos + 7) & ~7u;
    for (int f = 0; f < nk; f++)
        if (t->kind[f] != 'o') {
            t->off[f] = pos;
            pos += 8;
        }
    t->row_size = (pos + 7) & ~7u;
    t->factory = Py_NewRef(factory);
    t->names = Py_NewRef(names);
    t->kinds = Py_NewRef(kinds);
    t->defaults = Py_NewRef(defaults);
    if (defaults == Py_None) {
        t->kwnames = Py_NewRef(names);
        t->default_values = PyTuple_New(0);
    } else {
        PyObject *keys = PyDict_Keys(defaults);
        PyObject *vals = keys == NULL ? NULL : PyDict_Values(defaults);
        PyObject *ktuple = keys == NULL ? NULL : PyList_AsTuple(keys);
        t->kwnames = ktuple == NULL ? NULL : PySequence_Concat(names, ktuple);
        t->default_values = vals == NULL ? NULL : PyList_AsTuple(vals);
        Py_XDECREF(keys);
        Py_XDECREF(vals);
        Py_XDECREF(ktuple);
        if (t->kwnames != NULL) {
            for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(t->kwnames); i++)
                if (!PyUnicode_Check(PyTuple_GET_ITEM(t->kwnames, i))) {
                    PyErr_SetString(PyExc_TypeError, "Table defaults' names must be str");
                    return -1;
                }
        }
    }
    if (t->kwnames == NULL || t->default_values == NULL)
        return -1;
    t->values = PyList_New(0);
    t->index_of = PyDict_New();
    if (t->values == NULL || t->index_of == NULL)
        return -1;
    t->slots = PyMem_RawMalloc(8 * sizeof(uint32_t));
    if (t->slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memset(t->slots, 0xff, 8 * sizeof(uint32_t));
    t->mask = 7;
    t->cache = PyMem_RawCalloc(CACHE_SIZE, sizeof(struct cached));
    if (t->cache == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static int
Table_traverse(Table *t, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(t));
    Py_VISIT(t->factory);
    Py_VISIT(t->names);
    Py_VISIT(t->kinds);
    Py_VISIT(t->kwnames);
    Py_VISIT(t->defaults);
    Py_VISIT(t->default_values);
    if (t->cache != NULL)
        for (int i = 0; i < CACHE_SIZE; i++) {
            Py_VISIT(t->cache[i].key);
            Py_VISIT(t->cache[i].record);
        }
    Py_VISIT(t->values);
    Py_VISIT(t->index_of);
    return 0;
}

static int
Table_clear(Table *t)
{
    Py_CLEAR(t->factory);
    Py_CLEAR(t->names);
    Py_CLEAR(t->kinds);
    Py_CLEAR(t->kwnames);
    Py_CLEAR(t->defaults);
    Py_CLEAR(t->default_values);
    if (t->cache != NULL)
        for (int i = 0; i < CACHE_SIZE; i++) {
            Py_CLEAR(t->cache[i].key);
            Py_CLEAR(t->cache[i].record);
        }
    Py_CLEAR(t->values);
    Py_CLEAR(t->index_of);
    return 0;
}

static void
free_storage(Table *t)
{
    for (Py_ssize_t i = 0; i < t->nchunks; i++)
        PyMem_RawFree(t->chunks[i]);
    PyMem_Free(t->chunks);
    for (Py_ssize_t i = 0; i < t->nblocks; i++)
        PyMem_RawFree(t->blocks[i]);
    PyMem_Free(t->blocks);
    PyMem_RawFree(t->slots);
    PyMem_RawFree(t->cache);
    t->cache = NULL;
    t->chunks = NULL;
    t->blocks = NULL;
    t->slots = NULL;
    t->nchunks = t->chunks_cap = t->nblocks = t->blocks_cap = 0;
    t->count = 0;
}

static void
Table_dealloc(Table *t)
{
    PyTypeObject *tp = Py_TYPE(t);
    PyObject_GC_UnTrack(t);
    Table_clear(t);
    free_storage(t);
    tp->tp_free((PyObject *)t);
    Py_DECREF(tp);
}

static int
ready(Table *t)
{
    if (t->factory == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Table not initialised");
        return 0;
    }
    return 1;
}

static Py_ssize_t
Table_len(Table *t)
{
    return t->count;
}

static PyObject *
Table_subscript(Table *t, PyObject *key)
{
    if (!ready(t))
        return NULL;
    PyObject *rec = cached_get(t, key);
    if (rec == NULL && !PyErr_Occurred())
        PyErr_SetObject(PyExc_KeyError, key);
    return rec;
}

static int
Table_ass_subscript(Table *t, PyObject *key, PyObject *value)
{
    if (!ready(t))
        return -1;
    if (value == NULL) {
        PyErr_SetString(PyExc_TypeError, "rows of a Table are not removed");
        return -1;
    }
    return table_set(t, key, value);
}

static int
Table_contains(Table *t, PyObject *key)
{
    if (!ready(t))
        return -1;
    Py_ssize_t row = lookup(t, key);
    return row == -2 ? -1 : row >= 0;
}

static PyObject *
Table_get(Table *t, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 2) {
        PyErr_Format(PyExc_TypeError, "get expected 1 or 2 arguments, got %zd", nargs);
        return NULL;
    }
    if (!ready(t))
        return NULL;
    PyObject *rec = cached_get(t, args[0]);
    if (rec != NULL || PyErr_Occurred())
        return rec;
    return Py_NewRef(nargs > 1 ? args[1] : Py_None);
}

/* Iteration: 0 keys, 1 values, 2 items, in insertion order. Rows added
   while iterating are reached too. */
typedef struct {
    PyObject_HEAD
    Table *table;
    uint32_t next;
    int what;
} TableIter;

static PyTypeObject *TableIterType;

static PyObject *
iter_new(Table *t, int what)
{
    if (!ready(t))
        return NULL;
    TableIter *it = PyObject_GC_New(TableIter, TableIterType);
    if (it == NULL)
        return NULL;
    it->table = (Table *)Py_NewRef(t);
    it->next = 0;
    it->what = what;
    PyObject_GC_Track(it);
    return (PyObject *)it;
}

static PyObject *
TableIter_next(TableIter *it)
{
    Table *t = it->table;
    if (it->next >= t->count)
        return NULL;
    uint32_t row = it->next++;
    PyObject *key = text_to_str(ROW_KEY(ROW(t, row)));
    if (key == NULL || it->what == 0)
        return key;
    PyObject *rec = make_record(t, row, key);
    if (rec == NULL || it->what == 1) {
        Py_DECREF(key);
        return rec;
    }
    PyObject *pair = PyTuple_Pack(2, key, rec);
    Py_DECREF(key);
    Py_DECREF(rec);
    return pair;
}

static int
TableIter_traverse(TableIter *it, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(it));
    Py_VISIT(it->table);
    return 0;
}

static void
TableIter_dealloc(TableIter *it)
{
    PyTypeObject *tp = Py_TYPE(it);
    PyObject_GC_UnTrack(it);
    Py_CLEAR(it->table);
    PyObject_GC_Del(it);
    Py_DECREF(tp);
}

static PyType_Slot TableIter_slots[] = {
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, TableIter_next},
    {Py_tp_traverse, TableIter_traverse},
    {Py_tp_dealloc, TableIter_dealloc},
    {0, NULL},
};

static PyType_Spec TableIter_spec = {
    .name = "fundflow.detectors._table.TableIterator",
    .basicsize = sizeof(TableIter),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = TableIter_slots,
};

static PyObject *
Table_iter(Table *t)
{
    return iter_new(t, 0);
}

static PyObject *
Table_keys(Table *t, PyObject *Py_UNUSED(ignored))
{
    return iter_new(t, 0);
}

static PyObject *
Table_values(Table *t, PyObject *Py_UNUSED(ignored))
{
    return iter_new(t, 1);
}

static PyObject *
Table_items(Table *t, PyObject *Py_UNUSED(ignored))
{
    return iter_new(t, 2);
}

static PyObject *
Table_sizeof(Table *t, PyObject *Py_UNUSED(ignored))
{
    size_t n = Py_TYPE(t)->tp_basicsize;
    n += (size_t)t->nchunks * t->row_size * CHUNK_ROWS + (size_t)t->chunks_cap * sizeof(char *);
    n += t->arena_bytes + (size_t)t->blocks_cap * sizeof(char *);
    if (t->slots != NULL)
        n += (size_t)(t->mask + 1) * sizeof(uint32_t);
    if (t->cache != NULL)
        n += CACHE_SIZE * sizeof(struct cached);
    return PyLong_FromSize_t(n);
}

/* Writes arena text ``p`` as a 4-byte length and its bytes. */
static char *
put_text(char *out, const char *p)
{
    uint32_t n = text_len(p);
    memcpy(out, &n, 4);
    memcpy(out + 4, text_data(p), n);
    return out + 4 + n;
}

/* Pickled as (Table, (factory, names, kinds), (values, rows)): ``rows``
   is bytes, each row its key's text then its fields ('o' as a 4-byte
   index into ``values``, 's' as a 4-byte length or 0xffffffff for None
   then the text, 'i' as 8 bytes), little-endian as on the machines this
   runs on; the index is rebuilt on load. */
static PyObject *
Table_reduce(Table *t, PyObject *Py_UNUSED(ignored))
{
    if (!ready(t))
        return NULL;
    size_t size = 0;
    for (uint32_t row = 0; row < t->count; row++) {
        const char *r = ROW(t, row);
        size += 4 + text_len(ROW_KEY(r));
        for (int f = 0; f < t->nfields; f++) {
            const char *p = r + t->off[f];
            if (t->kind[f] == 's') {
                const char *text;
                memcpy(&text, p, sizeof text);
                size += 4 + (text != NULL ? text_len(text) : 0);
            } else {
                size += t->kind[f] == 'o' ? 4 : 8;
            }
        }
    }
    PyObject *blob = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)size);
    if (blob == NULL)
        return NULL;
    char *out = PyBytes_AS_STRING(blob);
    for (uint32_t row = 0; row < t->count; row++) {
        const char *r = ROW(t, row);
        const char *key = ROW_KEY(r);
        out = put_text(out, key);
        for (int f = 0; f < t->nfields; f++) {
            const char *p = r + t->off[f];
            if (t->kind[f] == 's') {
                const char *text;
                memcpy(&text, p, sizeof text);
                if (text == NULL) {
                    uint32_t none = UINT32_MAX;
                    memcpy(out, &none, 4);
                    out += 4;
                } else {
                    out = put_text(out, text);
                }
            } else {
                size_t w = t->kind[f] == 'o' ? 4 : 8;
                memcpy(out, p, w);
                out += w;
            }
        }
    }
    return Py_BuildValue("O(OOOO)(ON)", Py_TYPE(t), t->factory, t->names, t->kinds,
                         t->defaults, t->values, blob);
}

static PyObject *
Table_setstate(Table *t, PyObject *state)
{
    PyObject *values, *blob;
    if (!ready(t))
        return NULL;
    if (!PyArg_ParseTuple(state, "O!S:__setstate__", &PyList_Type, &values, &blob))
        return NULL;
    if (t->count != 0 || PyList_GET_SIZE(t->values) != 0) {
        PyErr_SetString(PyExc_RuntimeError, "__setstate__ on a Table that holds rows");
        return NULL;
    }
    /* The values, interned again in their order. */
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(values); i++) {
        uint32_t idx;
        if (intern_value(t, PyList_GET_ITEM(values, i), &idx) < 0)
            return NULL;
        if (idx != (uint32_t)i) {
            PyErr_SetString(PyExc_ValueError, "table state holds a value twice");
            return NULL;
        }
    }
    uint32_t nvalues = (uint32_t)PyList_GET_SIZE(values);
    const char *p = PyBytes_AS_STRING(blob);
    const char *end = p + PyBytes_GET_SIZE(blob);
    PyObject *fields[MAX_FIELDS];
#define NEED(k)                                                                     \
    if ((size_t)(end - p) < (size_t)(k)) {                                          \
        PyErr_SetString(PyExc_ValueError, "table state is truncated");              \
        goto fail;                                                                  \
    }
    while (p < end) {
        int got = 0;
        uint32_t n;
        PyObject *key = NULL;
        NEED(4);
        memcpy(&n, p, 4);
        NEED(4 + (size_t)n);
        key = PyUnicode_DecodeUTF8(p + 4, n, "surrogatepass");
        if (key == NULL)
            goto fail;
        p += 4 + n;
        for (int f = 0; f < t->nfields; f++) {
            PyObject *v = NULL;
            if (t->kind[f] == 'o') {
                uint32_t idx;
                NEED(4);
                memcpy(&idx, p, 4);
                p += 4;
                if (idx >= nvalues) {
                    PyErr_SetString(PyExc_ValueError, "table state names a missing value");
                } else {
                    v = Py_NewRef(PyList_GET_ITEM(t->values, idx));
                }
            } else if (t->kind[f] == 's') {
                NEED(4);
                uint32_t m;
                memcpy(&m, p, 4);
                p += 4;
                if (m == UINT32_MAX) {
                    v = Py_NewRef(Py_None);
                } else if ((size_t)(end - p) < m) {
                    PyErr_SetString(PyExc_ValueError, "table state is truncated");
                } else {
                    v = PyUnicode_DecodeUTF8(p, m, "surrogatepass");
                    p += m;
                }
            } else {
                int64_t x;
                NEED(8);
                memcpy(&x, p, 8);
                p += 8;
                v = x == NONE_INT ? Py_NewRef(Py_None) : PyLong_FromLongLong(x);
            }
            if (v == NULL) {
                for (int i = 0; i < got; i++)
                    Py_DECREF(fields[i]);
                Py_DECREF(key);
                goto fail;
            }
            fields[got++] = v;
        }
        int bad = table_set_values(t, key, fields) < 0;
        for (int i = 0; i < got; i++)
            Py_DECREF(fields[i]);
        Py_DECREF(key);
        if (bad)
            goto fail;
    }
#undef NEED
    Py_RETURN_NONE;
fail:
    return NULL;
}

static PyMethodDef Table_methods[] = {
    {"get", (PyCFunction)(void (*)(void))Table_get, METH_FASTCALL,
     "get(key, default=None): the record of key, or default"},
    {"keys", (PyCFunction)Table_keys, METH_NOARGS, "the keys, in insertion order"},
    {"values", (PyCFunction)Table_values, METH_NOARGS, "the records, in insertion order"},
    {"items", (PyCFunction)Table_items, METH_NOARGS, "(key, record) pairs, in insertion order"},
    {"__sizeof__", (PyCFunction)Table_sizeof, METH_NOARGS,
     "bytes held: rows, text, index and the object"},
    {"__reduce__", (PyCFunction)Table_reduce, METH_NOARGS, NULL},
    {"__setstate__", (PyCFunction)Table_setstate, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static PyObject *
Table_get_distinct(Table *t, void *Py_UNUSED(closure))
{
    if (!ready(t))
        return NULL;
    return PyLong_FromSsize_t(PyList_GET_SIZE(t->values));
}

static PyGetSetDef Table_getset[] = {
    {"distinct_values", (getter)Table_get_distinct, NULL,
     "how many distinct 'o' values are kept", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot Table_slots[] = {
    {Py_tp_doc, "Table(factory, names, kinds): a compact str-keyed table of records "
                "(see the module's source for the layout)"},
    {Py_tp_init, Table_init},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_traverse, Table_traverse},
    {Py_tp_clear, Table_clear},
    {Py_tp_dealloc, Table_dealloc},
    {Py_tp_iter, Table_iter},
    {Py_tp_methods, Table_methods},
    {Py_tp_getset, Table_getset},
    {Py_mp_length, Table_len},
    {Py_mp_subscript, Table_subscript},
    {Py_mp_ass_subscript, Table_ass_subscript},
    {Py_sq_contains, Table_contains},
    {0, NULL},
};

static PyType_Spec Table_spec = {
    .name = "fundflow.detectors._table.Table",
    .basicsize = sizeof(Table),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = Table_slots,
};

static int
module_exec(PyObject *m)
{
    PyObject *table = PyType_FromModuleAndSpec(m, &Table_spec, NULL);
    if (table == NULL)
        return -1;
    if (PyModule_AddObject(m, "Table", table) < 0) {
        Py_DECREF(table);
        return -1;
    }
    TableIterType = (PyTypeObject *)PyType_FromModuleAndSpec(m, &TableIter_spec, NULL);
    if (TableIterType == NULL)
        return -1;
    return 0;
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
    {0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "fundflow.detectors._table",
    .m_doc = "A compact str-keyed table of records for the reference data.",
    .m_size = 0,
    .m_slots = module_slots,
};

PyMODINIT_FUNC
PyInit__table(void)
{
    return PyModuleDef_Init(&module);
}
