/* The per-event work on buffered syscalls, in compiled code (loaded with ctypes by
   tracee/records.py): at record, a run of the syscall buffer's records turned into the
   columns of a trace chunk (recorder.sysbuf_record calls_from does the same in Python); at
   replay, a chunk's raw blob checked and laid out (tracefile.chunks _decode) and a run of its
   events packed for the replay loop (replayer.fastpath collect).

   Every number read from a record or a chunk is bounded before it sizes a copy or an index:
   a crafted input gives an error code or a shorter run, never a read or write out of the
   buffers handed in (whose sizes are passed with them). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define REC_HEAD 64          /* tracee/sysbuf_hook.c struct rec's head */
#define DONE 0x80000000u
#define NO_ARG 0xFF
#define MAX_OUT 0x10000
#define ARGS_SIZE 56         /* a BUFFERED event's "registers": six arguments, then rip */
#define REGS 216             /* struct user_regs_struct */
#define COLUMNS 7
#define WCOLUMNS 3
#define TABLE_WORDS 3        /* per syscall number: out_arg, cap_arg, fixed size */
#define OFF_WORDS 4          /* per decoded event: regs at, info at, first write, data at */
#define EV_SIZE (REGS + 24)  /* replay's struct ev: registers, nr, result, nwrites, first */
#define WR_SIZE 24           /* struct wr: addr, size, offset */
#define EV_BUFFERED 0x80000000u
#define KIND_SYSCALL 2
#define KIND_BUFFERED 11
#define MAX_NR 1024          /* the size of collect's map of batchable numbers */
/* decode's errors */
#define E_COLUMNS -1
#define E_NEGATIVE -2
#define E_WRITES -3
#define E_LENGTHS -4
#define E_ROOM -5

static int64_t get64(const uint8_t *p)
{
    int64_t v;
    memcpy(&v, p, 8);
    return v;
}

static void put64(uint8_t *p, uint64_t v)
{
    memcpy(p, &v, 8);
}

/* -- record ------------------------------------------------------------------------------ */

/* The records of chunk[pos, len) (whole records of the syscall buffer), at most `cap` of
   them, as BUFFERED events' columns: nrs, results, write counts (0 or 1), registers
   (ARGS_SIZE each), the writes' addresses and sizes, and their bytes one after the other.
   `table`: TABLE_WORDS per syscall number below `table_nrs` (out_arg NO_ARG: no output).
   state[0]: where the next record starts, state[1] the writes, state[2] the data bytes.
   `data` has room for len - pos bytes (the outputs are copies of parts of the records).
   `whole`: the records are read as the recorder's stop finds them (recorder.sysbuf_record
   take): stop before one that is not whole (tracee.sysbuf parse), whose output the hook
   has not copied yet (no DONE) or whose result it has not stored (PENDING): the Python path
   takes those. Returns the records taken. */
long relive_buffered_columns(const uint8_t *chunk, long len, long pos, long cap, uint64_t rip,
                             const int64_t *table, long table_nrs, int64_t *nrs,
                             int64_t *results, int64_t *counts, uint8_t *regs, int64_t *waddrs,
                             int64_t *wsizes, uint8_t *data, int64_t *state, int whole)
{
    long n = 0, w = 0, d = 0;
    if (pos < 0)
        pos = len;
    while (n < cap && pos <= len - REC_HEAD) {
        uint32_t size, nr;
        uint64_t args[6];
        int64_t result;
        memcpy(&size, chunk + pos, 4);
        memcpy(&nr, chunk + pos + 4, 4);
        memcpy(args, chunk + pos + 8, 48);
        memcpy(&result, chunk + pos + 56, 8);
        if (size < REC_HEAD)
            break;
        if (whole && (size % 8 || size > len - pos || !(nr & DONE) || result == INT64_MIN))
            break;
        nr &= ~DONE;
        int64_t count = 0;
        if (nr < (uint64_t)table_nrs && !(-4096 < result && result < 0)) {
            const int64_t *e = table + (long)nr * TABLE_WORDS;
            int64_t out_arg = e[0], cap_arg = e[1], n_out;
            if (out_arg >= 0 && out_arg < 6) {
                if (cap_arg == NO_ARG)
                    n_out = e[2];
                else if (cap_arg >= 0 && cap_arg < 6 && result > 0 && result <= MAX_OUT
                         && (uint64_t)result <= args[cap_arg])
                    n_out = result;
                else
                    n_out = 0;
                if (n_out > (int64_t)size - REC_HEAD)
                    n_out = (int64_t)size - REC_HEAD;
                if (args[out_arg] && n_out > 0) {
                    long at = pos + REC_HEAD, avail = len - at;
                    long take = n_out < avail ? (long)n_out : avail;
                    memcpy(data + d, chunk + at, (size_t)take);
                    waddrs[w] = (int64_t)args[out_arg];
                    wsizes[w] = take;
                    d += take;
                    w++;
                    count = 1;
                }
            }
        }
        nrs[n] = nr;
        results[n] = result;
        counts[n] = count;
        for (int k = 0; k < 6; k++)
            put64(regs + n * ARGS_SIZE + 8 * k, args[k]);
        put64(regs + n * ARGS_SIZE + 48, rip);
        n++;
        pos += size;
    }
    state[0] = pos;
    state[1] = w;
    state[2] = d;
    return n;
}

/* -- replay: a chunk's layout ------------------------------------------------------------ */

/* Check a chunk's raw blob of n events (tracefile/chunks.py gives its layout) as _decode
   does; sizes[0] = its writes, sizes[1] = its full register files (216 bytes). 0 or E_*. */
long relive_chunk_sizes(const uint8_t *raw, long size, long n, int64_t *sizes)
{
    if (n < 0 || n > (1L << 24) || size < 0 || size / 8 / COLUMNS < n)
        return E_COLUMNS;
    long head = COLUMNS * n * 8;
    uint64_t w = 0, planes = 0, other = 0, infos = 0, data = 0;
    for (long i = 0; i < n; i++) {
        int64_t nw = get64(raw + (4 * n + i) * 8), rl = get64(raw + (5 * n + i) * 8);
        int64_t il = get64(raw + (6 * n + i) * 8);
        if (nw < 0 || rl < 0 || il < 0)
            return E_NEGATIVE;
        if (nw > size)
            return E_WRITES;
        if (rl > size || il > size)
            return E_LENGTHS;
        w += (uint64_t)nw;
        if (w > (uint64_t)size)
            return E_WRITES;
        if (rl == REGS)
            planes++;
        else
            other += (uint64_t)rl;
        infos += (uint64_t)il;
    }
    if (w * WCOLUMNS * 8 > (uint64_t)(size - head))
        return E_WRITES;
    long wpos = head + (long)w * 8;  /* the sizes column */
    for (uint64_t k = 0; k < w; k++) {
        int64_t s = get64(raw + wpos + (long)k * 8);
        if (s < 0)
            return E_NEGATIVE;
        if (s > size)
            return E_LENGTHS;
        data += (uint64_t)s;
        if (data > (uint64_t)size)
            return E_LENGTHS;
    }
    uint64_t want = (uint64_t)head + w * WCOLUMNS * 8 + planes * REGS + other + infos + data;
    if (other > (uint64_t)size || infos > (uint64_t)size || want != (uint64_t)size)
        return E_LENGTHS;
    sizes[0] = (int64_t)w;
    sizes[1] = (int64_t)planes;
    return 0;
}

/* Lay out a chunk `relive_chunk_sizes` accepted (w writes, `planes` full register files):
   the register files restored into `flat` (planes * REGS bytes: byte planes gathered, each
   XORed with its thread's previous one), and per event OFF_WORDS in `off`: where its
   registers are (in `flat` if 216 bytes long, else in raw), its info, its first write's
   index and its first write's bytes (in raw). 0 or E_*. */
long relive_chunk_layout(const uint8_t *raw, long size, long n, long w, long planes,
                         uint8_t *flat, int64_t *off)
{
    int64_t sizes[2];
    long err = relive_chunk_sizes(raw, size, n, sizes);
    if (err)
        return err;
    if (sizes[0] != w || sizes[1] != planes)
        return E_ROOM;
    long head = COLUMNS * n * 8;
    long pos = head + w * WCOLUMNS * 8;
    for (long i = 0; i < REGS; i++) {
        const uint8_t *src = raw + pos + i * planes;
        for (long k = 0; k < planes; k++)
            flat[k * REGS + i] = src[k];
    }
    long other = pos + planes * REGS, ipos = other, dpos, fp = 0, wi = 0;
    for (long i = 0; i < n; i++) {
        int64_t rl = get64(raw + (5 * n + i) * 8);
        if (rl != REGS)
            ipos += rl;
    }
    dpos = ipos;
    for (long i = 0; i < n; i++)
        dpos += get64(raw + (6 * n + i) * 8);
    /* each thread's last register file: an open-addressing table of 2^k >= 2n slots */
    long cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    int64_t *tids = malloc((size_t)cap * sizeof *tids), *last = malloc((size_t)cap * sizeof *last);
    if (tids == NULL || last == NULL) {
        free(tids);
        free(last);
        return E_ROOM;
    }
    for (long s = 0; s < cap; s++)
        last[s] = -1;
    long spos = head + w * 8;
    for (long i = 0; i < n; i++) {
        int64_t tid = get64(raw + i * 8), rl = get64(raw + (5 * n + i) * 8);
        int64_t il = get64(raw + (6 * n + i) * 8), nw = get64(raw + (4 * n + i) * 8);
        if (rl == REGS) {
            long s = (long)(((uint64_t)tid * 0x9E3779B97F4A7C15ull) >> 40) & (cap - 1);
            while (last[s] >= 0 && tids[s] != tid)
                s = (s + 1) & (cap - 1);
            if (last[s] >= 0) {
                uint8_t *cur = flat + fp * REGS;
                const uint8_t *prev = flat + last[s] * REGS;
                for (int b = 0; b < REGS; b++)
                    cur[b] ^= prev[b];
            }
            tids[s] = tid;
            last[s] = fp;
            off[i * OFF_WORDS] = fp * REGS;
            fp++;
        } else {
            off[i * OFF_WORDS] = other;
            other += rl;
        }
        off[i * OFF_WORDS + 1] = ipos;
        ipos += il;
        off[i * OFF_WORDS + 2] = wi;
        off[i * OFF_WORDS + 3] = dpos;
        for (int64_t k = 0; k < nw; k++)
            dpos += get64(raw + spos + (wi + k) * 8);
        wi += nw;
    }
    free(tids);
    free(last);
    return 0;
}

/* -- replay: packing a batch ------------------------------------------------------------- */

/* Events [i, n) of a laid-out chunk packed for relive_replay_run as replayer.fastpath
   collect packs them, while they are task `tid`'s emulated events: number allowed by
   `allowed` (MAX_NR bytes), no info, a BUFFERED event with ARGS_SIZE registers or a SYSCALL
   one with REGS, no conservative write, addresses that fit. Up to max_events events; an
   event whose writes reach max_bytes (counting from `off0`) is the last. With evs == NULL,
   only counts: out[0] events, out[1] writes, out[2] data bytes; with the buffers (sized by
   a counting call), packs them, first writes numbered from `nw0`, data from `off0`.
   Returns the events taken. */
long relive_chunk_collect(const uint8_t *raw, long n, long w, const uint8_t *flat,
                          const int64_t *off, long i, int64_t tid, const uint8_t *allowed,
                          long max_events, long max_bytes, long nw0, long off0, uint8_t *evs,
                          uint8_t *wrs, uint8_t *data, int64_t *out)
{
    long head = COLUMNS * n * 8, addr_col = head, size_col = head + w * 8,
         cons_col = head + 2 * w * 8;
    long taken = 0, nwrites = 0, bytes = 0;
    for (long e = i; e < n && taken < max_events; e++) {
        int64_t etid = get64(raw + e * 8), kind = get64(raw + (n + e) * 8);
        int64_t nr = get64(raw + (2 * n + e) * 8), result = get64(raw + (3 * n + e) * 8);
        int64_t nw = get64(raw + (4 * n + e) * 8), rl = get64(raw + (5 * n + e) * 8);
        int64_t il = get64(raw + (6 * n + e) * 8);
        if (etid != tid || nr < 0 || nr >= MAX_NR || !allowed[nr] || il != 0)
            break;
        if (!((kind == KIND_BUFFERED && rl == ARGS_SIZE) || (kind == KIND_SYSCALL && rl == REGS)))
            break;
        if (nw >= (int64_t)EV_BUFFERED)
            break;
        long wf = (long)off[e * OFF_WORDS + 2];
        int bad = 0;
        for (int64_t k = 0; k < nw; k++)
            if (get64(raw + cons_col + (wf + k) * 8) != 0 || get64(raw + addr_col + (wf + k) * 8) < 0)
                bad = 1;
        if (bad)
            break;
        if (evs != NULL) {
            uint8_t *ev = evs + taken * EV_SIZE;
            const uint8_t *regs = kind == KIND_SYSCALL ? flat + off[e * OFF_WORDS]
                                                       : raw + off[e * OFF_WORDS];
            uint32_t count = (uint32_t)nw, first = (uint32_t)(nw0 + nwrites);
            if (kind == KIND_BUFFERED) {
                static const int slots[7] = {14, 13, 12, 7, 9, 8, 16};
                memset(ev, 0, REGS);
                for (int k = 0; k < 7; k++)
                    memcpy(ev + 8 * slots[k], regs + 8 * k, 8);
                count |= EV_BUFFERED;
            } else {
                memcpy(ev, regs, REGS);
            }
            put64(ev + REGS, (uint64_t)nr);
            put64(ev + REGS + 8, (uint64_t)result);
            memcpy(ev + REGS + 16, &count, 4);
            memcpy(ev + REGS + 20, &first, 4);
            long dp = (long)off[e * OFF_WORDS + 3];
            for (int64_t k = 0; k < nw; k++) {
                int64_t s = get64(raw + size_col + (wf + k) * 8);
                uint8_t *wr = wrs + (nwrites + k) * WR_SIZE;
                put64(wr, (uint64_t)get64(raw + addr_col + (wf + k) * 8));
                put64(wr + 8, (uint64_t)s);
                put64(wr + 16, (uint64_t)(off0 + bytes));
                memcpy(data + bytes, raw + dp, (size_t)s);
                dp += s;
                bytes += s;
            }
        } else {
            for (int64_t k = 0; k < nw; k++)
                bytes += get64(raw + size_col + (wf + k) * 8);
        }
        nwrites += nw;
        taken++;
        if (nw && off0 + bytes >= max_bytes)
            break;
    }
    out[0] = taken;
    out[1] = nwrites;
    out[2] = bytes;
    return taken;
}

/* -- the interface ----------------------------------------------------------------------- */

struct abi_entry {
    const char *name;
    int64_t value;
};

static const struct abi_entry abi[] = {
    {"REC_HEAD", REC_HEAD}, {"DONE", DONE}, {"NO_ARG", NO_ARG}, {"MAX_OUT", MAX_OUT},
    {"ARGS_SIZE", ARGS_SIZE}, {"REGS", REGS}, {"COLUMNS", COLUMNS}, {"WCOLUMNS", WCOLUMNS},
    {"TABLE_WORDS", TABLE_WORDS}, {"OFF_WORDS", OFF_WORDS}, {"EV_SIZE", EV_SIZE},
    {"WR_SIZE", WR_SIZE}, {"EV_BUFFERED", EV_BUFFERED}, {"KIND_SYSCALL", KIND_SYSCALL},
    {"KIND_BUFFERED", KIND_BUFFERED}, {"MAX_NR", MAX_NR},
};

long relive_interface(const char **names, int64_t *values, long n)
{
    long count = (long)(sizeof abi / sizeof abi[0]);
    for (long i = 0; i < count && i < n; i++) {
        names[i] = abi[i].name;
        values[i] = abi[i].value;
    }
    return count;
}

#ifndef RECORDS_SOURCE_CRC
#define RECORDS_SOURCE_CRC -1
#endif
int64_t relive_source_crc(void)
{
    return RECORDS_SOURCE_CRC;
}
