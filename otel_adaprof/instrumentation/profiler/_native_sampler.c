/*
 * The native in-process sampler of Python stacks: the agent's `native` profiler
 * (otel_adaprof/instrumentation/profiler/native.py), and the experiments of
 * bench/other_samplers.py and bench/native_sampler_services.py (docs/benchmarks.md,
 * "Other samplers, and a native one of our own").
 *
 * A native thread that holds no GIL and runs no Python reads frames with
 * process_vm_readv on its own process, as py-spy reads them from outside: a freed or
 * unmapped address is an error returned, never a fault, and a stack read while it
 * changes is cut short, not followed into garbage. Samples go to a ring buffer that
 * Python drains. CPython 3.11 and 3.12 only (their frame, thread and GIL layouts,
 * from the interpreter's internal headers at build time); setup.py builds it there
 * and leaves it out elsewhere.
 *
 * A frame is "qualname (file:line)", the line that of the instruction running (the
 * code object's location table, read as CPython's PyCode_Addr2Line reads it), cached
 * by code object and instruction. When the cache fills, it starts again at the next
 * drain (a new generation of frame ids).
 *
 * Clocks:
 *   wall    at exponential gaps of wall time: the GIL holder (py-spy --gil's reading,
 *           and a tick that finds the GIL free costs one wake-up) or, with
 *           threads="all", every thread (py-spy --idle's). The agent's clock.
 *   thread  a POSIX timer on each Python thread's own CPU clock, period 1 ns, so that
 *           it fires at every scheduler tick that finds that thread on a CPU, signalled
 *           (SIGEV_THREAD_ID) to the sampler thread, which reads that thread's stack:
 *           nothing while the service sleeps; threads listed again every 100 ms;
 *   tick    the GIL holder at every tick of the process's CPU clock;
 *   cpu     the GIL holder at exponential gaps of the process's CPU clock.
 * thread, tick and cpu are experiments (bench/): tick and cpu charge any thread's CPU
 * to the GIL holder, and thread reads the demo shapes with an error not explained yet.
 * The sampler thread asks the scheduler for a short slice so that its ticks come on
 * time on a busy machine (SHORT_SLICE_NS), and tells a GIL holder that waited for a CPU
 * from one its own wake-up set aside by the scheduler's stamps (took_its_cpu).
 */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#define Py_BUILD_CORE 1
#include <Python.h>
#if PY_VERSION_HEX < 0x030b0000 || PY_VERSION_HEX >= 0x030d0000
#error "the native sampler reads CPython 3.11 and 3.12 frames only"
#endif
#include "internal/pycore_frame.h"
#include "internal/pycore_runtime.h"
#include "internal/pycore_interp.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define MAX_DEPTH 128
#define RING 16384
#define FRAMES 32768 /* frame cache slots (open addressing) */
#define MAX_NAMES (FRAMES / 2)
#define NAME_MAX_LEN 200
#define LINETABLE_MAX 65536
#define MAX_THREADS 512
#define CHUNK_MAX 65536 /* a thread's frame stack chunk read in one go, at most */
/* A cached frame is trusted without reading its code object again for this many ticks
 * (about a second at 100 Hz): a code object freed and another made at the same address
 * could be misnamed that long. */
#define REVALIDATE_TICKS 100

typedef struct {
    uint64_t ts_ns;   /* CLOCK_MONOTONIC */
    uint64_t real_ns; /* CLOCK_REALTIME */
    uint64_t tid;     /* native thread id */
    uint64_t ident;   /* threading.get_ident() */
    uint32_t depth;
    uint32_t off_cpu; /* it held the GIL but was not running (on_cpu=True only) */
    uint32_t slow;    /* read by the watcher: its thread's span turned slow */
    uint32_t ids[MAX_DEPTH]; /* innermost first; index into names */
} sample_t;

typedef struct {
    const void *code;
    const void *name_ptr;
    const void *file_ptr;
    int firstlineno;
    int addr; /* instruction, in code units */
    uint32_t id;
    uint64_t checked; /* the tick its code object was last read at */
} frame_slot_t;

typedef struct {
    char *qualname;
    char *filename;
    int line;
} name_t;

static pid_t self_pid;
static pthread_t sampler_thread;
static volatile int running = 0;
static volatile uint64_t interval_ns = 10000000;
static volatile uint32_t max_depth = MAX_DEPTH;
static volatile int all_threads = 0;
static struct _gil_runtime_state *gil;
static PyInterpreterState *main_interp;
static int cpu_clock = 0; /* 0 wall, 1 cpu (exponential CPU gaps), 2 tick (every tick), 3 thread */
#define TICK_SIGNAL (SIGRTMAX - 3)

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER; /* ring, frames, names */
static sample_t *ring;
static uint32_t ring_head, ring_len;
static frame_slot_t frames[FRAMES];
static name_t *names;
static uint32_t names_len, names_cap;
static int reset_pending;
static uint32_t names_limit = MAX_NAMES; /* limit_names(): tests fill the cache sooner */
static uint64_t generation;
static uint8_t linetable[LINETABLE_MAX]; /* the sampler thread's, under lock */
static char chunk_buf[CHUNK_MAX];        /* the same */

static uint64_t ticks, idle_ticks, samples, errors, dropped, cpu_ns, full, off_cpu, rechecked, switched;
/* on_cpu=True: a GIL holder's sample is flagged off-CPU when the holder was not running
 * at the tick (the scheduler had set it aside: wall time, not CPU). The agent keeps
 * such samples on spans and out of the CPU profile; drain() leaves them out.
 * A holder whose CPU clock moved while read ran. One whose clock stood still either
 * waited for a CPU since before the tick, or ran until this thread's wake-up took its
 * CPU. The scheduler tells the two apart: a switch from one thread to another stamps
 * the one put out and the one put in with the same run-queue clock (`se.exec_start` in
 * /proc/self/task/TID/sched), so equal stamps mean this thread took the holder's CPU
 * (`switched`): it counts as CPU. Where that file cannot be read, the holder is looked
 * at again after this thread has slept RECHECK_NS: if this thread had taken its CPU,
 * it runs meanwhile (session 42's check, which also counts a holder that had been
 * waiting and got the CPU this thread gave back). Measured in docs/benchmarks.md,
 * "A CPU profile under contention (session 42)" and "Late ticks under contention,
 * and a holder that waited (session 51)". */
static volatile int on_cpu_only = 0;
static volatile int use_stamps = 1; /* start(stamps=False): the look again only (bench/) */
#define RECHECK_NS 100000
/* equal stamps, within the clock's rounding */
#define SAME_SWITCH_NS 1000
static volatile pid_t sampler_native_id;

/* The sampler thread asks the scheduler for a short slice (sched_setattr's
 * sched_runtime for SCHED_OTHER: Linux 6.12 and later honour it, earlier kernels ignore
 * it). A waking thread with a short slice preempts the running one at once; with the
 * default slice (0.7-3 ms) it waits, when every CPU is busy, until the running thread's
 * slice ends or that thread blocks. Those late ticks are not independent of the work:
 * a short stretch of CPU (a 2 ms request) often ends, and its thread blocks, before the
 * read, so short stretches lost their reads to what came after them. `slice_ns` is
 * what the kernel reports back (0: it keeps no slice of ours); `late_ticks` counts the
 * wall ticks read more than LATE_NS after their time, `late_ns` sums every tick's delay.
 * Measured in docs/benchmarks.md, "Late ticks under contention, and a holder that
 * waited (session 51)". */
#define SHORT_SLICE_NS 100000
#define LATE_NS 500000
static volatile uint64_t slice_asked_ns = SHORT_SLICE_NS;
static uint64_t slice_ns, late_ticks, late_ns;

/* scope='requests': the wall clock samples only while a request is open (the agent calls
 * request_started() and request_ended() at each local root span's start and end). With
 * none open the sampler thread's timer is not armed (the first request to open arms it,
 * the last to close takes back a tick planned after it: wall_loop), so a service that
 * is idle most of the time no longer pays a wake-up for each tick that would find it
 * idle; the exponential gaps restart when one opens (they have no memory: the time in
 * requests is still sampled uniformly). While none is open it looks at the GIL once a
 * second
 * (probe_interval()): the share of those looks that find it held is CPU outside
 * requests, which the scope does not see (stats(): outside_probes, outside_held; the
 * agent then samples the process). Measured in docs/benchmarks.md, "Sampling only
 * while a request is open: ... (session 48)". */
static volatile int requests_only = 0;
static int in_flight;    /* open requests (__atomic) */
static uint64_t closed_ns; /* CLOCK_MONOTONIC when the last one open closed (__atomic) */
/* gate_waits: the times the sampler left its timer unarmed (none open); outside_*: below */
static uint64_t gate_waits, outside_probes, outside_held;
static uint64_t probe_ns = 1000000000ull; /* probe_interval(): tests look sooner */

static int safe_read(void *dst, const void *src, size_t n)
{
    struct iovec local = {dst, n}, remote = {(void *)src, n};
    return process_vm_readv(self_pid, &local, 1, &remote, 1, 0) == (ssize_t)n ? 0 : -1;
}

static uint64_t now_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* A str object's text (ASCII or Latin-1 compact strings; others as "?"). */
static void read_str(const void *obj, char *out, size_t cap)
{
    PyASCIIObject head;
    out[0] = '\0';
    if (obj == NULL || safe_read(&head, obj, sizeof head) != 0) {
        strcpy(out, "?");
        return;
    }
    size_t n = (size_t)head.length < cap - 1 ? (size_t)head.length : cap - 1;
    const char *data;
    if (head.state.compact && head.state.ascii)
        data = (const char *)obj + sizeof(PyASCIIObject);
    else if (head.state.compact && head.state.kind == PyUnicode_1BYTE_KIND)
        data = (const char *)obj + sizeof(PyCompactUnicodeObject);
    else {
        strcpy(out, "?");
        return;
    }
    if (safe_read(out, data, n) != 0)
        n = 0;
    out[n] = '\0';
}

static int scan_varint(const uint8_t *tab, int n, int *i, unsigned int *out)
{
    unsigned int val = 0, shift = 0;
    while (*i < n && shift < 32) {
        uint8_t b = tab[(*i)++];
        val |= (unsigned int)(b & 63) << shift;
        shift += 6;
        if (!(b & 64)) {
            *out = val;
            return 0;
        }
    }
    return -1;
}

/* The line of instruction `addr` (code units) from a 3.11/3.12 location table
 * (Objects/locations.md): entries of (first byte: 1, code:4, length-1:3), the line
 * moved by each entry's delta; code 15 has no line. -1 if not found. */
static int line_at(const uint8_t *tab, int n, int firstlineno, int addr)
{
    if (addr < 0)
        return firstlineno; /* not started yet: PyCode_Addr2Line's answer */
    int line = firstlineno, start = 0, i = 0;
    while (i < n) {
        uint8_t first = tab[i];
        if (!(first & 128))
            return -1; /* out of step */
        int code = (first >> 3) & 15, length = (first & 7) + 1, delta = 0;
        int at = i + 1;
        unsigned int v;
        if (code == 13 || code == 14) {
            if (scan_varint(tab, n, &at, &v) != 0)
                return -1;
            delta = (v & 1) ? -(int)(v >> 1) : (int)(v >> 1);
        } else if (code >= 10 && code <= 12)
            delta = code - 10;
        line += delta;
        if (addr < start + length)
            return code == 15 ? -1 : line;
        start += length;
        for (i++; i < n && !(tab[i] & 128); i++) {
        }
    }
    return -1;
}

static void reset_names(void) /* under lock, the ring empty */
{
    for (uint32_t i = 0; i < names_len; i++) {
        free(names[i].qualname);
        free(names[i].filename);
    }
    names_len = 0;
    memset(frames, 0, sizeof frames);
    generation++;
    reset_pending = 0;
}

/* The id of the frame running `frame_addr` of code object `code` (under lock). */
static int frame_id(const PyCodeObject *code, const _Py_CODEUNIT *prev_instr, uint32_t *id)
{
    const _Py_CODEUNIT *first = (const _Py_CODEUNIT *)((const char *)code + offsetof(PyCodeObject, co_code_adaptive));
    long addr = (long)(prev_instr - first);
    if (addr < -1 || addr > (1L << 24))
        return -1; /* not this code's instruction: a frame read while it changed */
    uint32_t h0 = (uint32_t)((((uintptr_t)code >> 4) ^ ((uintptr_t)addr * 40503u)) * 2654435761u) % FRAMES;
    uint32_t h = h0;
    for (uint32_t probe = 0; probe < 64 && frames[h].code != NULL; probe++, h = (h + 1) % FRAMES) {
        frame_slot_t *slot = &frames[h];
        if (slot->code == code && slot->addr == (int)addr) {
            if (ticks - slot->checked < REVALIDATE_TICKS) { /* seen lately: no read */
                *id = slot->id;
                return 0;
            }
            break;
        }
    }
    PyCodeObject co;
    if (safe_read(&co, code, offsetof(PyCodeObject, co_code_adaptive)) != 0)
        return -1;
    h = h0;
    for (uint32_t probe = 0; probe < 64; probe++, h = (h + 1) % FRAMES) {
        frame_slot_t *slot = &frames[h];
        if (slot->code == code && slot->addr == (int)addr && slot->name_ptr == co.co_qualname &&
            slot->file_ptr == co.co_filename && slot->firstlineno == co.co_firstlineno) {
            slot->checked = ticks;
            *id = slot->id;
            return 0;
        }
        if (slot->code == NULL || (slot->code == code && slot->addr == (int)addr)) {
            /* new, or an address reused by another code object */
            if (reset_pending || names_len >= names_limit) {
                reset_pending = 1; /* full: start again at the next drain */
                full++;
                return -1;
            }
            char qual[NAME_MAX_LEN], file[NAME_MAX_LEN];
            read_str(co.co_qualname, qual, sizeof qual);
            read_str(co.co_filename, file, sizeof file);
            int line = -1;
            PyBytesObject head;
            if (co.co_linetable != NULL &&
                safe_read(&head, co.co_linetable, offsetof(PyBytesObject, ob_sval)) == 0) {
                Py_ssize_t n = Py_SIZE(&head);
                if (n > 0 && n <= LINETABLE_MAX &&
                    safe_read(linetable, (const char *)co.co_linetable + offsetof(PyBytesObject, ob_sval), (size_t)n) == 0)
                    line = line_at(linetable, (int)n, co.co_firstlineno, (int)addr);
            }
            if (names_len == names_cap) {
                uint32_t cap = names_cap ? 2 * names_cap : 1024;
                name_t *grown = realloc(names, cap * sizeof *names);
                if (grown == NULL)
                    return -1;
                names = grown;
                names_cap = cap;
            }
            name_t *name = &names[names_len];
            name->qualname = strdup(qual);
            name->filename = strdup(file);
            name->line = line < 0 ? 0 : line;
            if (name->qualname == NULL || name->filename == NULL) {
                free(name->qualname);
                free(name->filename);
                return -1;
            }
            slot->code = code;
            slot->addr = (int)addr;
            slot->name_ptr = co.co_qualname;
            slot->file_ptr = co.co_filename;
            slot->firstlineno = co.co_firstlineno;
            slot->checked = ticks;
            slot->id = names_len++;
            *id = slot->id;
            return 0;
        }
    }
    reset_pending = 1; /* a long probe: the table is crowded; start again */
    full++;
    return -1;
}

static clockid_t thread_cpu_clock(unsigned long tid)
{
    return (clockid_t)((~(clockid_t)tid) << 3) | 2 | 4; /* CPUCLOCK_SCHED | per thread */
}

/* One frame's fixed part: from the copy of the thread's stack chunk when it lies there
 * (most frames: one read per sample instead of one per frame), else read alone. */
static int read_frame(_PyInterpreterFrame *dst, const _PyInterpreterFrame *src, const char *lo, size_t have)
{
    size_t n = offsetof(_PyInterpreterFrame, localsplus);
    const char *at = (const char *)src;
    if (have >= n && at >= lo && (size_t)(at - lo) <= have - n) {
        memcpy(dst, chunk_buf + (at - lo), n);
        return 0;
    }
    return safe_read(dst, src, n);
}

/* The scheduler's `se.exec_start` of thread `tid` (0: this thread), in ns of its run
 * queue's clock; -1 where the file or the line is missing (a kernel built without it). */
static int64_t exec_start_ns(unsigned long tid)
{
    char path[64], buf[512];
    if (tid)
        snprintf(path, sizeof path, "/proc/self/task/%lu/sched", tid);
    else
        snprintf(path, sizeof path, "/proc/thread-self/sched");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    const char *at = strstr(buf, "se.exec_start");
    if (at == NULL || (at = strchr(at, ':')) == NULL)
        return -1;
    char *dot, *end;
    unsigned long long ms = strtoull(at + 1, &dot, 10);
    if (*dot != '.')
        return -1;
    unsigned long long frac = strtoull(dot + 1, &end, 10);
    if (end - dot - 1 != 6) /* printed as ms with six decimals */
        return -1;
    return (int64_t)(ms * 1000000ull + frac);
}

/* 1: this thread's wake-up took thread `tid`'s CPU (one switch put it out and this
 * thread in); 0: it was put out otherwise; -1: cannot tell. */
static int took_its_cpu(unsigned long tid)
{
    int64_t theirs = exec_start_ns(tid), mine = exec_start_ns(0);
    if (theirs < 0 || mine < 0)
        return -1;
    return llabs(theirs - mine) <= SAME_SWITCH_NS;
}

/* Walk the frames from `frame` outwards and keep them as one sample of thread `tid`,
 * whose thread state `ts` (a copy) says where its frame stack's chunk is.
 * `on_cpu`: keep it only if the thread used CPU while its frames were read (its CPU
 * clock moved): a GIL holder the scheduler has set aside is not running Python code. */
static void record_as(const _PyInterpreterFrame *frame, const PyThreadState *ts, int on_cpu, uint32_t depth, int slow)
{
    unsigned long tid = ts->native_thread_id, ident = ts->thread_id;
    sample_t s;
    s.tid = tid;
    s.ident = ident;
    s.depth = 0;
    s.slow = (uint32_t)slow;
    pthread_mutex_lock(&lock);
    /* read under the lock: a drain's watermark (its time) follows every sample before it */
    s.ts_ns = now_ns(CLOCK_MONOTONIC);
    s.real_ns = now_ns(CLOCK_REALTIME);
    struct timespec before = {0, 0}, after = {0, 0};
    if (on_cpu && clock_gettime(thread_cpu_clock(tid), &before) != 0)
        on_cpu = 0; /* no clock to read: keep it */
    const char *lo = (const char *)ts->datastack_chunk, *hi = (const char *)ts->datastack_top;
    size_t have = 0;
    if (lo != NULL && hi > lo && (size_t)(hi - lo) <= CHUNK_MAX && safe_read(chunk_buf, lo, (size_t)(hi - lo)) == 0)
        have = (size_t)(hi - lo);
    for (int hops = 0; frame != NULL && s.depth < depth && hops < 4 * MAX_DEPTH; hops++) {
        _PyInterpreterFrame f;
        if (read_frame(&f, frame, lo, have) != 0) {
            errors++;
            break;
        }
#if PY_VERSION_HEX >= 0x030c0000
        if (f.owner == FRAME_OWNED_BY_CSTACK) { /* the interpreter's entry shim */
            frame = f.previous;
            continue;
        }
#endif
        if (frame_id(f.f_code, f.prev_instr, &s.ids[s.depth]) != 0) {
            errors++;
            break;
        }
        s.depth++;
        frame = f.previous;
    }
    s.off_cpu = 0;
    if (on_cpu && s.depth > 0 && clock_gettime(thread_cpu_clock(tid), &after) == 0 &&
        after.tv_sec == before.tv_sec && after.tv_nsec == before.tv_nsec) {
        /* it held the GIL and did not run while read: waiting for a CPU since before the
         * tick, or set aside by this very thread's wake-up. Read without the lock (a take
         * must not wait for /proc or a sleep). */
        uint64_t gen = generation;
        pthread_mutex_unlock(&lock);
        int took = use_stamps ? took_its_cpu(tid) : -1, ran = took == 1;
        if (took < 0) { /* cannot tell: give the CPU back a moment and look again */
            struct timespec pause = {0, RECHECK_NS}, later = {0, 0};
            nanosleep(&pause, NULL);
            ran = clock_gettime(thread_cpu_clock(tid), &later) == 0 &&
                  (later.tv_sec != after.tv_sec || later.tv_nsec != after.tv_nsec);
        }
        pthread_mutex_lock(&lock);
        rechecked++;
        /* stamped again: a take while the lock was free moved the watermark past the first */
        s.ts_ns = now_ns(CLOCK_MONOTONIC);
        s.real_ns = now_ns(CLOCK_REALTIME);
        if (generation != gen) { /* the names were reset meanwhile: its ids name nothing */
            errors++;
            s.depth = 0;
        } else if (took == 1)
            switched++;
        else if (!ran) {
            if (!slow)
                off_cpu++;
            s.off_cpu = 1;
        }
    }
    if (s.depth > 0) {
        if (ring_len == RING)
            dropped++;
        else {
            ring[(ring_head + ring_len) % RING] = s;
            ring_len++;
            samples++;
        }
    }
    pthread_mutex_unlock(&lock);
}

static void record(const _PyInterpreterFrame *frame, const PyThreadState *ts, int on_cpu)
{
    record_as(frame, ts, on_cpu, max_depth, 0);
}

static void sample_holder(void)
{
    if (!_Py_atomic_load_relaxed(&gil->locked)) {
        idle_ticks++;
        return;
    }
    const PyThreadState *holder = (const PyThreadState *)_Py_atomic_load_relaxed(&gil->last_holder);
    PyThreadState ts;
    _PyCFrame cframe;
    if (holder == NULL || safe_read(&ts, holder, sizeof ts) != 0 || ts.cframe == NULL ||
        safe_read(&cframe, ts.cframe, sizeof cframe) != 0) {
        errors++;
        return;
    }
    record(cframe.current_frame, &ts, on_cpu_only);
}

/* Every Python thread of the main interpreter, each with a frame to show. */
static void sample_all(void)
{
    const PyThreadState *t = NULL;
    if (safe_read(&t, (const char *)main_interp + offsetof(PyInterpreterState, threads.head), sizeof t) != 0) {
        errors++;
        return;
    }
    int seen = 0;
    for (int n = 0; t != NULL && n < MAX_THREADS; n++) {
        PyThreadState ts;
        _PyCFrame cframe;
        if (safe_read(&ts, t, sizeof ts) != 0) {
            errors++;
            break;
        }
        if (ts.native_thread_id != (unsigned long)sampler_native_id && ts.cframe != NULL &&
            safe_read(&cframe, ts.cframe, sizeof cframe) == 0 && cframe.current_frame != NULL) {
            record(cframe.current_frame, &ts, 0);
            seen++;
        }
        t = ts.next;
    }
    if (!seen)
        idle_ticks++;
}

static uint64_t exp_gap(unsigned int *seed)
{
    double u = (rand_r(seed) + 1.0) / ((double)RAND_MAX + 2.0);
    double gap = -log(u) * (double)interval_ns; /* exponential gaps: no aliasing */
    return gap > 60e9 ? (uint64_t)60e9 : (uint64_t)gap;
}

/* The wall clock's sleep: a timer (wall_tfd, CLOCK_MONOTONIC, absolute) armed for the
 * next tick, and an event (wall_efd) for stop() and configure(). `tick_at` is the time
 * the timer is armed for (0: none), under arm_lock, which also keeps the gaps' seed.
 *
 * With scope='requests' the threads that open and close requests arm it themselves: the
 * first request opened arms a tick at an exponential gap from its start (nothing armed
 * before), and the last one closed takes back a tick planned after its close (it would
 * find none open: out of scope). The sampler thread re-arms from the tick it read while
 * a request is open, and leaves the timer unarmed when none is. So it wakes for the
 * ticks in scope only: before session 52 it also woke at each first request (to plan
 * from it) and at each tick planned after the last close (to find it out of scope),
 * about three times the wake-ups on the demo service at 100 Hz (bench/sampler_wakes.py),
 * each about 25 us of CPU on the benchmark's virtual machine (docs/benchmarks.md,
 * "Waking only for a tick in a request (session 52)"). A request's hooks pay a
 * timerfd_settime instead of a condition's signal. */
static int wall_tfd = -1, wall_efd = -1;
static pthread_mutex_t arm_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t tick_at;
static unsigned int arm_seed;
static uint64_t wakes, taken_back;

/* Set timer `fd` (absolute, its own clock) for `at` ns; 0 disarms it. */
static void set_timer(int fd, uint64_t at)
{
    struct itimerspec when;
    memset(&when, 0, sizeof when);
    when.it_value.tv_sec = (time_t)(at / 1000000000ull);
    when.it_value.tv_nsec = (long)(at % 1000000000ull);
    if (fd >= 0)
        timerfd_settime(fd, TFD_TIMER_ABSTIME, &when, NULL);
}

/* Close `*fd` if open (a forked child's copy of the parent's file description). */
static void drop_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

static void arm(uint64_t at) /* under arm_lock; 0: disarm */
{
    tick_at = at;
    set_timer(wall_tfd, at);
}

/* Wake the sampler thread (stop(), a new interval or scope): it plans again from now. */
static void cut_wall_sleep(void)
{
    uint64_t one = 1;
    if (wall_efd >= 0 && write(wall_efd, &one, sizeof one) < 0) {
        /* the counter is full: it is awake already */
    }
}

static int requests_open(void)
{
    return __atomic_load_n(&in_flight, __ATOMIC_SEQ_CST) > 0;
}

/* Plan the next tick from `now` (under arm_lock): at a gap in the process scope or
 * while a request is open, else none (a request's opening arms one). */
static void plan_from(uint64_t now)
{
    if (!requests_only || requests_open())
        arm(now + exp_gap(&arm_seed));
    else {
        arm(0);
        gate_waits++;
    }
}

static void wall_loop(unsigned int *seed, clockid_t own)
{
    pthread_mutex_lock(&arm_lock);
    arm_seed = *seed;
    plan_from(now_ns(CLOCK_MONOTONIC));
    pthread_mutex_unlock(&arm_lock);
    /* the last tick or look outside requests: with scope='requests', a look every
     * probe_ns that finds none open and nothing armed (the timer may have been taken
     * back while this thread slept) */
    uint64_t last_look = now_ns(CLOCK_MONOTONIC);
    while (running) {
        int timeout_ms = -1;
        if (requests_only) {
            uint64_t now = now_ns(CLOCK_MONOTONIC), due = last_look + probe_ns;
            timeout_ms = due > now ? (int)((due - now + 999999) / 1000000) : 0;
        }
        struct pollfd fds[2] = {{wall_tfd, POLLIN, 0}, {wall_efd, POLLIN, 0}};
        int n = poll(fds, 2, timeout_ms);
        wakes++;
        if (!running)
            break;
        uint64_t now = now_ns(CLOCK_MONOTONIC);
        if (n == 0) { /* the look's time */
            pthread_mutex_lock(&arm_lock);
            int armed = tick_at != 0;
            pthread_mutex_unlock(&arm_lock);
            if (requests_only && !armed && !requests_open()) {
                outside_probes++;
                if (_Py_atomic_load_relaxed(&gil->locked))
                    outside_held++;
            }
            last_look = now;
            cpu_ns = now_ns(own);
            continue;
        }
        if (n > 0 && (fds[1].revents & POLLIN)) { /* a new interval or scope: plan from now */
            uint64_t count;
            if (read(wall_efd, &count, sizeof count) < 0) {
                /* nothing to read: another wake took it */
            }
            pthread_mutex_lock(&arm_lock);
            plan_from(now);
            pthread_mutex_unlock(&arm_lock);
            cpu_ns = now_ns(own);
            continue;
        }
        uint64_t expired;
        if (n < 0 || read(wall_tfd, &expired, sizeof expired) != (ssize_t)sizeof expired) {
            cpu_ns = now_ns(own); /* armed again or taken back since it fired */
            continue;
        }
        pthread_mutex_lock(&arm_lock);
        uint64_t planned = tick_at;
        if (planned == 0 || planned > now) { /* taken back, or armed again, meanwhile */
            pthread_mutex_unlock(&arm_lock);
            cpu_ns = now_ns(own);
            continue;
        }
        /* Out of scope when none was open at the planned time: none is now, and the
         * last one closed before it. A tick the scheduler ran late, after a request
         * open at its time had closed, still reads (what runs now, as in the process
         * scope): dropping it would lose the ends of requests, most of a short one. */
        int open = requests_open();
        int in_scope = !requests_only || open || __atomic_load_n(&closed_ns, __ATOMIC_SEQ_CST) >= planned;
        if (!requests_only || open) {
            uint64_t next = planned + exp_gap(&arm_seed);
            arm(next < now ? now : next); /* behind: no catch-up burst */
        } else {
            arm(0);
            gate_waits++;
        }
        pthread_mutex_unlock(&arm_lock);
        if (in_scope) {
            ticks++;
            last_look = now;
            if (now > planned) {
                late_ns += now - planned;
                if (now - planned > LATE_NS)
                    late_ticks++;
            }
            if (all_threads)
                sample_all();
            else
                sample_holder();
        }
        cpu_ns = now_ns(own);
    }
    pthread_mutex_lock(&arm_lock);
    arm(0);
    pthread_mutex_unlock(&arm_lock);
}

static void cpu_loop(unsigned int *seed, clockid_t own)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, TICK_SIGNAL);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* it waits in sigwaitinfo, never delivered */
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = TICK_SIGNAL;
    sev._sigev_un._tid = (pid_t)syscall(SYS_gettid);
    timer_t timer;
    if (timer_create(CLOCK_PROCESS_CPUTIME_ID, &sev, &timer) != 0) {
        errors++;
        running = 0;
        return;
    }
    while (running) {
        uint64_t gap = cpu_clock == 2 ? 1 : exp_gap(seed);
        struct itimerspec when = {{0, 0}, {(time_t)(gap / 1000000000ull), (long)(gap % 1000000000ull)}};
        if (when.it_value.tv_sec == 0 && when.it_value.tv_nsec == 0)
            when.it_value.tv_nsec = 1;
        timer_settime(timer, 0, &when, NULL);
        siginfo_t info;
        while (sigwaitinfo(&set, &info) < 0 && errno == EINTR) {
        }
        if (!running || info.si_code != SI_TIMER)
            continue; /* stop() woke it */
        ticks++;
        sample_holder();
        cpu_ns = now_ns(own);
    }
    timer_delete(timer);
}

/* "thread": a CPU timer on each Python thread's own CPU clock, every tick it runs
 * (period 1 ns: the kernel checks a thread's CPU timers at the scheduler ticks that find
 * it running), signalled to the sampler with the thread's slot; the sample is that
 * thread's stack, GIL or not. The threads are listed again every REFRESH_NS. */
#define REFRESH_NS 100000000ull
typedef struct {
    const PyThreadState *tstate;
    unsigned long tid, ident;
    timer_t timer;
    int used, seen;
} thread_slot_t;
static thread_slot_t slots[MAX_THREADS];
static pthread_mutex_t slots_lock = PTHREAD_MUTEX_INITIALIZER; /* sampler and track_current() */
static pid_t sampler_tid;
static uint64_t threads_timed;

/* A timer on thread `tid`'s CPU clock into free slot `i`, every tick it runs
 * (under slots_lock); 0 if made. */
static int time_thread(int i, const PyThreadState *tstate, unsigned long tid, unsigned long ident)
{
    thread_slot_t *slot = &slots[i];
    clockid_t clock = (clockid_t)((~(clockid_t)tid) << 3) | 2 | 4; /* its CPU clock */
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = TICK_SIGNAL;
    sev.sigev_value.sival_int = i;
    sev._sigev_un._tid = sampler_tid;
    struct itimerspec every = {{0, 1}, {0, 1}};
    if (timer_create(clock, &sev, &slot->timer) != 0)
        return -1;
    timer_settime(slot->timer, 0, &every, NULL);
    slot->tstate = tstate;
    slot->tid = tid;
    slot->ident = ident;
    slot->used = 1;
    threads_timed++;
    return 0;
}

static void refresh_threads(void)
{
    pthread_mutex_lock(&slots_lock);
    for (int i = 0; i < MAX_THREADS; i++)
        slots[i].seen = 0;
    const PyThreadState *t = NULL;
    if (safe_read(&t, (const char *)main_interp + offsetof(PyInterpreterState, threads.head), sizeof t) != 0) {
        pthread_mutex_unlock(&slots_lock);
        return;
    }
    for (int n = 0; t != NULL && n < MAX_THREADS; n++) {
        PyThreadState ts;
        if (safe_read(&ts, t, sizeof ts) != 0)
            break;
        int found = -1, free_slot = -1;
        for (int i = 0; i < MAX_THREADS; i++) {
            if (slots[i].used && slots[i].tstate == t && slots[i].tid == ts.native_thread_id)
                found = i;
            else if (!slots[i].used && free_slot < 0)
                free_slot = i;
        }
        if (found < 0 && free_slot >= 0 && ts.native_thread_id != 0 &&
            time_thread(free_slot, t, ts.native_thread_id, ts.thread_id) == 0)
            found = free_slot;
        if (found >= 0)
            slots[found].seen = 1;
        t = ts.next;
    }
    for (int i = 0; i < MAX_THREADS; i++)
        if (slots[i].used && !slots[i].seen) {
            timer_delete(slots[i].timer);
            slots[i].used = 0;
        }
    pthread_mutex_unlock(&slots_lock);
}

static void sample_thread(const PyThreadState *tstate, unsigned long tid)
{
    PyThreadState ts;
    _PyCFrame cframe;
    if (safe_read(&ts, tstate, sizeof ts) != 0 || ts.native_thread_id != tid) {
        errors++;
        return;
    }
    if (ts.cframe == NULL || safe_read(&cframe, ts.cframe, sizeof cframe) != 0 ||
        cframe.current_frame == NULL) {
        idle_ticks++; /* no Python frame: C code of its own */
        return;
    }
    record(cframe.current_frame, &ts, 0);
}

static void thread_loop(clockid_t own)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, TICK_SIGNAL);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    pthread_mutex_lock(&slots_lock);
    sampler_tid = (pid_t)syscall(SYS_gettid);
    pthread_mutex_unlock(&slots_lock);
    if (getenv("NS_FIFO") != NULL) { /* experiment: read at once, ahead of every thread */
        struct sched_param fifo = {1};
        if (pthread_setschedparam(pthread_self(), SCHED_FIFO, &fifo) != 0)
            errors += 1000000;
    }
    uint64_t refreshed = 0;
    while (running) {
        uint64_t now = now_ns(CLOCK_MONOTONIC);
        if (now - refreshed >= REFRESH_NS) {
            refresh_threads();
            refreshed = now;
        }
        struct timespec wait = {0, (long)REFRESH_NS};
        siginfo_t info;
        int got = sigtimedwait(&set, &info, &wait);
        if (!running)
            break;
        if (got < 0 || info.si_code != SI_TIMER)
            continue;
        int i = info.si_value.sival_int;
        if (i < 0 || i >= MAX_THREADS)
            continue;
        pthread_mutex_lock(&slots_lock);
        thread_slot_t slot = slots[i];
        pthread_mutex_unlock(&slots_lock);
        if (!slot.used)
            continue;
        ticks++;
        sample_thread(slot.tstate, slot.tid);
        cpu_ns = now_ns(own);
    }
    pthread_mutex_lock(&slots_lock);
    for (int i = 0; i < MAX_THREADS; i++)
        if (slots[i].used) {
            timer_delete(slots[i].timer);
            slots[i].used = 0;
        }
    sampler_tid = 0; /* no timer may be made for this thread from now on */
    pthread_mutex_unlock(&slots_lock);
}

/* struct sched_attr (glibc has no wrapper): the fields up to sched_period are enough */
typedef struct {
    uint32_t size, policy;
    uint64_t flags;
    int32_t nice;
    uint32_t priority;
    uint64_t runtime, deadline, period;
} slice_attr_t;

/* Ask for a slice of `ns` for this thread (0: leave the kernel's); the slice it keeps. */
static uint64_t ask_slice(uint64_t ns)
{
    slice_attr_t attr;
    if (ns == 0)
        return 0;
    memset(&attr, 0, sizeof attr);
    attr.size = sizeof attr;
    attr.policy = SCHED_OTHER;
    attr.nice = getpriority(PRIO_PROCESS, 0); /* the thread's own: never raised */
    attr.runtime = ns;
    if (syscall(SYS_sched_setattr, 0, &attr, 0) != 0)
        return 0;
    memset(&attr, 0, sizeof attr);
    if (syscall(SYS_sched_getattr, 0, &attr, (unsigned int)sizeof attr, 0) != 0 || attr.policy != SCHED_OTHER)
        return 0;
    return attr.runtime; /* what it keeps (clamped to 0.1-100 ms); before 6.12, none: 0 */
}

static void *sampler_main(void *unused)
{
    (void)unused;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* the service's signals go to its threads */
    pthread_setname_np(pthread_self(), "adaprof-native");
    sampler_native_id = (pid_t)syscall(SYS_gettid);
    slice_ns = ask_slice(slice_asked_ns);
    clockid_t own;
    pthread_getcpuclockid(pthread_self(), &own);
    unsigned int seed = (unsigned int)now_ns(CLOCK_MONOTONIC);
    if (cpu_clock == 3)
        thread_loop(own);
    else if (cpu_clock)
        cpu_loop(&seed, own);
    else
        wall_loop(&seed, own);
    cpu_ns = now_ns(own);
    return NULL;
}

static int parse_scope(const char *scope)
{
    if (scope == NULL || strcmp(scope, "process") == 0)
        return 0;
    if (strcmp(scope, "requests") == 0)
        return 1;
    PyErr_Format(PyExc_ValueError, "scope must be 'process' or 'requests', not '%s'", scope);
    return -1;
}

static int parse_threads(const char *threads)
{
    if (strcmp(threads, "holder") == 0)
        return 0;
    if (strcmp(threads, "all") == 0)
        return 1;
    PyErr_Format(PyExc_ValueError, "threads must be 'holder' or 'all', not '%s'", threads);
    return -1;
}

/* What every reader needs: the ring, a working process_vm_readv, the GIL and the main
 * interpreter. 0, or -1 with a Python error set. */
static int prepare(void)
{
    if (ring == NULL && (ring = calloc(RING, sizeof *ring)) == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self_pid = getpid();
    uint64_t probe = 42, got = 0;
    if (safe_read(&got, &probe, sizeof probe) != 0 || got != probe) {
        /* a seccomp profile that forbids process_vm_readv: no read would ever work */
        PyErr_Format(PyExc_OSError, "process_vm_readv on this process is refused (%s)", strerror(errno));
        return -1;
    }
#if PY_VERSION_HEX >= 0x030c0000
    gil = PyInterpreterState_Main()->ceval.gil;
#else
    gil = &_PyRuntime.ceval.gil;
#endif
    main_interp = PyInterpreterState_Main();
    return 0;
}

static PyObject *start(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"interval_us", "depth", "clock", "threads", "on_cpu", "scope", "slice_us", "stamps", NULL};
    unsigned long interval_us = 10000, depth = MAX_DEPTH, slice_us = SHORT_SLICE_NS / 1000;
    const char *clock = "wall", *threads = "holder", *scope = "process";
    int on_cpu = 0, stamps = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|kksspzkp", keywords, &interval_us, &depth, &clock, &threads,
                                     &on_cpu, &scope, &slice_us, &stamps))
        return NULL;
    int only = parse_scope(scope);
    if (only < 0)
        return NULL;
    if (only && strcmp(clock, "wall") != 0) {
        PyErr_SetString(PyExc_ValueError, "scope='requests' needs clock='wall'");
        return NULL;
    }
    if (strcmp(clock, "wall") != 0 && strcmp(clock, "cpu") != 0 && strcmp(clock, "tick") != 0 &&
        strcmp(clock, "thread") != 0) {
        PyErr_Format(PyExc_ValueError, "clock must be 'wall', 'cpu', 'tick' or 'thread', not '%s'", clock);
        return NULL;
    }
    int all = parse_threads(threads);
    if (all < 0)
        return NULL;
    if (all && strcmp(clock, "wall") != 0) {
        PyErr_SetString(PyExc_ValueError, "threads='all' needs clock='wall'");
        return NULL;
    }
    if (running) {
        PyErr_SetString(PyExc_RuntimeError, "the native sampler is already running");
        return NULL;
    }
    if (interval_us == 0 || depth == 0 || depth > MAX_DEPTH) {
        PyErr_Format(PyExc_ValueError, "interval_us must be > 0 and depth in 1..%d", MAX_DEPTH);
        return NULL;
    }
    if (prepare() != 0)
        return NULL;
    interval_ns = (uint64_t)interval_us * 1000ull;
    max_depth = (uint32_t)depth;
    all_threads = all;
    /* on one CPU the holder never runs while this thread reads it: keep every sample */
    cpu_set_t cpus;
    on_cpu_only = on_cpu && !(sched_getaffinity(0, sizeof cpus, &cpus) == 0 && CPU_COUNT(&cpus) == 1);
    cpu_clock = strcmp(clock, "cpu") == 0      ? 1
                : strcmp(clock, "tick") == 0   ? 2
                : strcmp(clock, "thread") == 0 ? 3
                                               : 0;
    ticks = idle_ticks = samples = errors = dropped = cpu_ns = full = off_cpu = rechecked = switched = 0;
    gate_waits = outside_probes = outside_held = 0;
    slice_asked_ns = (uint64_t)slice_us * 1000ull;
    use_stamps = stamps;
    slice_ns = late_ticks = late_ns = 0;
    requests_only = only;
    sampler_native_id = 0;
    wakes = taken_back = 0;
    if (wall_tfd < 0)
        wall_tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (wall_efd < 0)
        wall_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wall_tfd < 0 || wall_efd < 0) {
        PyErr_Format(PyExc_OSError, "could not make the sampler's timer (%s)", strerror(errno));
        return NULL;
    }
    uint64_t stale;
    while (read(wall_efd, &stale, sizeof stale) > 0) /* a stop()'s wake, not read */
        ;
    running = 1;
    if (pthread_create(&sampler_thread, NULL, sampler_main, NULL) != 0) {
        running = 0;
        PyErr_SetString(PyExc_OSError, "could not start the sampler thread");
        return NULL;
    }
    Py_RETURN_NONE;
}

/* A new interval, depth or thread choice for the running wall clock, in force at once. */
static PyObject *configure(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"interval_us", "depth", "threads", "scope", NULL};
    unsigned long interval_us, depth;
    const char *threads = "holder", *scope = "process";
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "kk|sz", keywords, &interval_us, &depth, &threads, &scope))
        return NULL;
    int all = parse_threads(threads);
    if (all < 0)
        return NULL;
    int only = parse_scope(scope);
    if (only < 0)
        return NULL;
    if (interval_us == 0 || depth == 0 || depth > MAX_DEPTH) {
        PyErr_Format(PyExc_ValueError, "interval_us must be > 0 and depth in 1..%d", MAX_DEPTH);
        return NULL;
    }
    if (!running || cpu_clock != 0) {
        PyErr_SetString(PyExc_RuntimeError, "configure() needs the wall clock running");
        return NULL;
    }
    uint64_t was = interval_ns;
    int was_only = requests_only;
    interval_ns = (uint64_t)interval_us * 1000ull;
    max_depth = (uint32_t)depth;
    all_threads = all;
    requests_only = only;
    if (interval_ns != was || only != was_only)
        cut_wall_sleep();
    Py_RETURN_NONE;
}

static PyObject *stop(PyObject *self, PyObject *unused)
{
    if (running) {
        running = 0;
        if (cpu_clock)
            pthread_kill(sampler_thread, TICK_SIGNAL); /* out of sigwaitinfo */
        else
            cut_wall_sleep(); /* out of its poll */
        Py_BEGIN_ALLOW_THREADS pthread_join(sampler_thread, NULL);
        Py_END_ALLOW_THREADS
    }
    Py_RETURN_NONE;
}

/* [(ts_ns, native_tid, ("qualname (file:line)", ... innermost first)), ...] since the
 * last drain (the bench scripts' reading: monotonic time, native thread ids). */
static PyObject *drain(PyObject *self, PyObject *unused)
{
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    pthread_mutex_lock(&lock);
    for (; ring_len > 0; ring_len--, ring_head = (ring_head + 1) % RING) {
        sample_t *s = &ring[ring_head];
        if (s->off_cpu || s->slow)
            continue; /* the bench scripts' reading: the sampler's CPU samples only */
        PyObject *stack = PyTuple_New(s->depth);
        if (stack == NULL)
            break;
        for (uint32_t i = 0; i < s->depth; i++) {
            const name_t *name = &names[s->ids[i]];
            PyObject *q = PyUnicode_DecodeLatin1(name->qualname, strlen(name->qualname), "replace");
            PyObject *f = PyUnicode_DecodeLatin1(name->filename, strlen(name->filename), "replace");
            PyObject *text = q && f ? PyUnicode_FromFormat("%U (%U:%d)", q, f, name->line) : NULL;
            Py_XDECREF(q);
            Py_XDECREF(f);
            if (text == NULL)
                text = Py_NewRef(Py_None);
            PyTuple_SET_ITEM(stack, i, text);
        }
        PyObject *item = Py_BuildValue("(KKN)", (unsigned long long)s->ts_ns, (unsigned long long)s->tid, stack);
        if (item == NULL || PyList_Append(out, item) != 0) {
            Py_XDECREF(item);
            break;
        }
        Py_DECREF(item);
    }
    if (reset_pending && ring_len == 0)
        reset_names();
    pthread_mutex_unlock(&lock);
    if (PyErr_Occurred()) {
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

/* take(generation, known) -> (generation, new names, samples, watermark_ns): the agent's
 * reading. New names are (qualname, filename, line) from id `known` on (from 0 when
 * `generation` is not the current one); a sample is (unix time ns, threading ident,
 * frame ids root first, off_cpu, slow: the watcher's); every sample taken before
 * watermark_ns (unix time) is in. */
static PyObject *take(PyObject *self, PyObject *args)
{
    unsigned long long gen_in;
    Py_ssize_t known;
    if (!PyArg_ParseTuple(args, "Kn", &gen_in, &known))
        return NULL;
    PyObject *new_names = PyList_New(0), *got = PyList_New(0), *result = NULL;
    if (new_names == NULL || got == NULL)
        goto done;
    pthread_mutex_lock(&lock);
    if (gen_in != generation || known < 0 || (size_t)known > names_len)
        known = 0;
    for (uint32_t i = (uint32_t)known; i < names_len; i++) {
        PyObject *q = PyUnicode_DecodeLatin1(names[i].qualname, strlen(names[i].qualname), "replace");
        PyObject *f = PyUnicode_DecodeLatin1(names[i].filename, strlen(names[i].filename), "replace");
        PyObject *item = q && f ? Py_BuildValue("(NNi)", q, f, names[i].line) : NULL;
        if (item == NULL) {
            Py_XDECREF(q);
            Py_XDECREF(f);
            break;
        }
        int failed = PyList_Append(new_names, item);
        Py_DECREF(item);
        if (failed)
            break;
    }
    for (; !PyErr_Occurred() && ring_len > 0; ring_len--, ring_head = (ring_head + 1) % RING) {
        sample_t *s = &ring[ring_head];
        PyObject *stack = PyTuple_New(s->depth);
        if (stack == NULL)
            break;
        for (uint32_t i = 0; i < s->depth; i++) /* root first */
            PyTuple_SET_ITEM(stack, i, PyLong_FromUnsignedLong(s->ids[s->depth - 1 - i]));
        PyObject *item = Py_BuildValue("(KKNOO)", (unsigned long long)s->real_ns, (unsigned long long)s->ident, stack,
                                       s->off_cpu ? Py_True : Py_False, s->slow ? Py_True : Py_False);
        if (item == NULL || PyList_Append(got, item) != 0) {
            Py_XDECREF(item);
            break;
        }
        Py_DECREF(item);
    }
    uint64_t gen_out = generation, watermark = now_ns(CLOCK_REALTIME);
    if (reset_pending && ring_len == 0)
        reset_names(); /* the names of the samples above went out with them */
    pthread_mutex_unlock(&lock);
    if (!PyErr_Occurred())
        result = Py_BuildValue("(KOOK)", (unsigned long long)gen_out, new_names, got, (unsigned long long)watermark);
done:
    Py_XDECREF(new_names);
    Py_XDECREF(got);
    return result;
}

/* At a request's start and end (the agent's span processor, at each local root span):
 * the requests open, which scope='requests' samples. Kept whatever the scope, so that
 * a scope set later knows what is open. */
static PyObject *request_started(PyObject *self, PyObject *unused)
{
    if (__atomic_fetch_add(&in_flight, 1, __ATOMIC_SEQ_CST) == 0 && running && cpu_clock == 0 && requests_only) {
        /* gaps from the request's start (they have no memory): its first tick */
        uint64_t now = now_ns(CLOCK_MONOTONIC);
        pthread_mutex_lock(&arm_lock);
        if (tick_at == 0)
            arm(now + exp_gap(&arm_seed));
        pthread_mutex_unlock(&arm_lock);
    }
    Py_RETURN_NONE;
}

static PyObject *request_ended(PyObject *self, PyObject *unused)
{
    int open = __atomic_load_n(&in_flight, __ATOMIC_SEQ_CST);
    /* never below 0: a request that started before the agent did ends uncounted */
    while (open > 0 && !__atomic_compare_exchange_n(&in_flight, &open, open - 1, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
        ;
    if (open == 1) { /* the last one open: from now on, out of scope */
        uint64_t now = now_ns(CLOCK_MONOTONIC);
        __atomic_store_n(&closed_ns, now, __ATOMIC_SEQ_CST);
        if (running && cpu_clock == 0 && requests_only) {
            /* a tick planned after the close would find none open: take it back (one
             * planned before it is the sampler's to read, late or not) */
            pthread_mutex_lock(&arm_lock);
            if (tick_at > now && !requests_open()) {
                arm(0);
                taken_back++;
            }
            pthread_mutex_unlock(&arm_lock);
        }
    }
    Py_RETURN_NONE;
}

static PyObject *stats(PyObject *self, PyObject *unused)
{
    return Py_BuildValue("{sKsKsKsKsKsKsIsKsKsKsisisKsisKsKsisisKsKsKsKsKsKsKsK}", "ticks", (unsigned long long)ticks, "idle_ticks",
                         (unsigned long long)idle_ticks, "samples", (unsigned long long)samples,
                         "errors", (unsigned long long)errors, "dropped", (unsigned long long)dropped,
                         "cpu_ns", (unsigned long long)cpu_ns, "code_names", names_len, "threads_timed",
                         (unsigned long long)threads_timed, "generation", (unsigned long long)generation,
                         "cache_full", (unsigned long long)full, "native_id", (int)sampler_native_id,
                         "running", (int)running, "off_cpu", (unsigned long long)off_cpu,
                         "on_cpu_only", (int)on_cpu_only, "rechecked", (unsigned long long)rechecked, "switched",
                         (unsigned long long)switched,
                         "requests_only", (int)requests_only, "requests_open",
                         (int)__atomic_load_n(&in_flight, __ATOMIC_SEQ_CST), "gate_waits",
                         (unsigned long long)gate_waits, "outside_probes", (unsigned long long)outside_probes,
                         "outside_held", (unsigned long long)outside_held, "slice_ns", (unsigned long long)slice_ns,
                         "late_ticks", (unsigned long long)late_ticks, "late_ns", (unsigned long long)late_ns,
                         "wakes", (unsigned long long)wakes, "taken_back", (unsigned long long)taken_back);
}

/* In a thread that just started (threading.Thread._bootstrap_inner patched to call it
 * first): its timer now, not at the next listing, which a thread-per-request server's
 * threads may not live to see. */
static PyObject *track_current(PyObject *self, PyObject *unused)
{
    const PyThreadState *tstate = PyThreadState_Get();
    unsigned long tid = PyThread_get_thread_native_id();
    unsigned long ident = PyThread_get_thread_ident();
    int made = 0;
    pthread_mutex_lock(&slots_lock);
    if (!running || cpu_clock != 3 || sampler_tid == 0) { /* the sampler is not (or no more) there */
        pthread_mutex_unlock(&slots_lock);
        Py_RETURN_FALSE;
    }
    int free_slot = -1, known = 0;
    for (int i = 0; i < MAX_THREADS; i++) {
        if (slots[i].used && slots[i].tid == tid && slots[i].tstate == tstate)
            known = 1;
        else if (!slots[i].used && free_slot < 0)
            free_slot = i;
    }
    if (!known && free_slot >= 0)
        made = time_thread(free_slot, tstate, tid, ident) == 0;
    pthread_mutex_unlock(&slots_lock);
    return PyBool_FromLong(made || known);
}

/*
 * The slow-span watcher: slow-span capture without the GIL. The span path registers a
 * span as it starts (watch: its id, its thread, when it turns slow, unix ns) and takes
 * it out as it ends (unwatch); a second native thread sleeps on a timerfd until the
 * earliest registered span turns slow, reads that span's thread's frames (found by its
 * ident in the interpreter's thread list) and puts the sample in the ring flagged
 * `slow` (the agent keeps it on the span, out of the CPU profile), then reads it again
 * every `repeat` while the span stays open. It reads with the on-CPU check of
 * record(): a thread waiting (I/O, a lock, the GIL) is flagged off-CPU.
 *
 * The span path moves the timer without waking the watcher: a span that turns slow
 * before the planned wake-up moves it earlier (watch), and the span the timer was set
 * for, ending in time, moves it to the next one (unwatch), so that the watcher wakes
 * only when a span is slow (most end before: with the p90 trigger, nine in ten).
 * Registered spans are a dense array (a scan costs the spans open, not the table) with
 * an open-addressing index on the span id.
 */
#define WATCH_SLOTS 4096 /* spans registered at most; the index's size, a power of two */
#define WATCH_PROBE 64   /* longest probe: beyond it a span is not watched */
#define WATCH_BATCH 64   /* threads read per wake-up at most */
#define WATCH_NEVER UINT64_MAX
#define WATCH_SLACK_NS 2000000ull /* a span may be read up to 2 ms after it turns slow */
/* A span still open this long after it turned slow is forgotten (one that never ends). */
#define WATCH_MAX_AGE_NS 600000000000ull

typedef struct {
    uint64_t key; /* span id */
    uint64_t ident, tid;
    const PyThreadState *ts; /* the thread's state when it registered it (NULL: unknown) */
    uint64_t due_ns;  /* unix ns: turns slow (or its next read) */
    uint64_t slow_ns; /* unix ns: turns slow */
    uint32_t reads;
    uint32_t at; /* its slot in the index */
} watch_t;

static watch_t watched[WATCH_SLOTS]; /* dense: [0, watched_len) */
static uint32_t watched_len;
static int32_t watch_index[WATCH_SLOTS]; /* span id's slot -> position in watched, or -1 */
static pthread_mutex_t watch_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_t watch_thread;
static volatile int watching = 0;
static int watch_tfd = -1;
static uint64_t watch_next = WATCH_NEVER; /* when the timer is set for (unix ns) */
static uint64_t watch_repeat_ns = 50000000ull, watch_min_gap_ns = 0;
static uint32_t watch_depth = MAX_DEPTH;
static int watch_on_cpu = 1;
static volatile pid_t watch_native_id;
static uint64_t watch_spans, watch_reads, watch_full, watch_cpu_ns, watch_wakeups;

static uint32_t watch_hash(uint64_t key)
{
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdull;
    key ^= key >> 33;
    return (uint32_t)key & (WATCH_SLOTS - 1);
}

static void watch_clear(void) /* under watch_lock */
{
    memset(watch_index, 0xff, sizeof watch_index);
    watched_len = 0;
}

/* The timer, set for `at` (unix ns; WATCH_NEVER: not set). Under watch_lock. */
static void watch_arm(uint64_t at)
{
    if (at == 0)
        at = 1; /* 0 would disarm it */
    set_timer(watch_tfd, at == WATCH_NEVER ? 0 : at);
    watch_next = at;
}

/* The index slot of `key`, or -1. */
static int watch_find(uint64_t key)
{
    uint32_t i = watch_hash(key);
    for (int probe = 0; probe < WATCH_PROBE; probe++, i = (i + 1) & (WATCH_SLOTS - 1)) {
        int32_t d = watch_index[i];
        if (d < 0)
            return -1;
        if (watched[d].key == key)
            return (int)i;
    }
    return -1;
}

/* Take out the span at index slot i: backward-shift deletion in the index (the
 * entries after it that probed past it move up), then the last of the dense array
 * takes its place there. */
static void watch_delete(uint32_t i)
{
    int32_t gone = watch_index[i];
    uint32_t j = i;
    for (;;) {
        watch_index[i] = -1;
        for (;;) {
            j = (j + 1) & (WATCH_SLOTS - 1);
            int32_t d = watch_index[j];
            if (d < 0)
                goto shifted;
            uint32_t home = watch_hash(watched[d].key);
            /* j stays unless its home lies cyclically outside (i, j] */
            if (i <= j ? (i < home && home <= j) : (i < home || home <= j))
                continue;
            break;
        }
        watch_index[i] = watch_index[j];
        watched[watch_index[i]].at = i;
        i = j;
    }
shifted:
    watched_len--;
    if ((uint32_t)gone != watched_len) {
        watched[gone] = watched[watched_len];
        watch_index[watched[gone].at] = gone;
    }
}

/* The soonest due of the registered spans (WATCH_NEVER: none). */
static uint64_t watch_soonest(void)
{
    uint64_t soonest = WATCH_NEVER;
    for (uint32_t d = 0; d < watched_len; d++)
        if (watched[d].due_ns < soonest)
            soonest = watched[d].due_ns;
    return soonest;
}

/* The threads whose span is due now, each once (nested slow spans: one read). */
static int watch_collect(uint64_t now, uint64_t *idents, const PyThreadState **states)
{
    int n = 0;
    for (uint32_t d = 0; d < watched_len;) {
        watch_t *w = &watched[d];
        if (now > w->slow_ns + WATCH_MAX_AGE_NS) {
            watch_delete(w->at); /* the last one moved here: look at d again */
            continue;
        }
        if (w->due_ns <= now && n < WATCH_BATCH) {
            int seen = 0;
            for (int k = 0; k < n; k++)
                seen |= idents[k] == w->ident;
            if (!seen) {
                states[n] = w->ts;
                idents[n++] = w->ident;
            }
            if (w->reads++ == 0)
                watch_spans++;
            w->due_ns = watch_repeat_ns ? now + watch_repeat_ns : WATCH_NEVER;
        }
        d++;
    }
    return n;
}

static void watch_read_state(const PyThreadState *ts)
{
    _PyCFrame cframe;
    if (ts->cframe != NULL && safe_read(&cframe, ts->cframe, sizeof cframe) == 0 && cframe.current_frame != NULL) {
        record_as(cframe.current_frame, ts, watch_on_cpu, watch_depth, 1);
        watch_reads++;
    }
}

/* Read the thread `ident`: from the state it registered its span with when that is
 * still its own, else found in the interpreter's thread list. */
static void watch_read(uint64_t ident, const PyThreadState *state)
{
    PyThreadState ts;
    if (state != NULL && safe_read(&ts, state, sizeof ts) == 0 && ts.thread_id == ident) {
        watch_read_state(&ts);
        return;
    }
    const PyThreadState *t = NULL;
    if (safe_read(&t, (const char *)main_interp + offsetof(PyInterpreterState, threads.head), sizeof t) != 0) {
        errors++;
        return;
    }
    for (int n = 0; t != NULL && n < MAX_THREADS; n++) {
        if (safe_read(&ts, t, sizeof ts) != 0) {
            errors++;
            return;
        }
        if (ts.thread_id == ident) {
            watch_read_state(&ts);
            return;
        }
        t = ts.next;
    }
}

static void *watcher_main(void *unused)
{
    (void)unused;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    pthread_setname_np(pthread_self(), "adaprof-watch"); /* top -H, the benchmarks */
    watch_native_id = (pid_t)syscall(SYS_gettid);
    clockid_t own;
    pthread_getcpuclockid(pthread_self(), &own);
    uint64_t idents[WATCH_BATCH];
    const PyThreadState *states[WATCH_BATCH];
    uint64_t last_read = 0;
    pthread_mutex_lock(&watch_lock);
    while (watching) {
        uint64_t now = now_ns(CLOCK_REALTIME);
        int n = now >= last_read + watch_min_gap_ns ? watch_collect(now, idents, states) : 0;
        if (n > 0) {
            last_read = now;
            pthread_mutex_unlock(&watch_lock);
            ticks++; /* the frame cache's clock, when the sampler does not run */
            for (int k = 0; k < n; k++)
                watch_read(idents[k], states[k]);
            watch_cpu_ns = now_ns(own);
            pthread_mutex_lock(&watch_lock);
            continue; /* what came due meanwhile */
        }
        uint64_t next = watch_soonest();
        if (next != WATCH_NEVER && next < last_read + watch_min_gap_ns)
            next = last_read + watch_min_gap_ns; /* the reads' share of a core is held */
        watch_arm(next);
        pthread_mutex_unlock(&watch_lock);
        struct pollfd wait = {watch_tfd, POLLIN, 0};
        poll(&wait, 1, 1000);
        uint64_t expired;
        if (read(watch_tfd, &expired, sizeof expired) < 0) { /* not expired: a timeout */
        }
        watch_wakeups++;
        pthread_mutex_lock(&watch_lock);
    }
    pthread_mutex_unlock(&watch_lock);
    watch_cpu_ns = now_ns(own);
    return NULL;
}

static PyObject *watch_start(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"repeat_us", "depth", "on_cpu", "min_gap_us", NULL};
    unsigned long repeat_us = 50000, depth = MAX_DEPTH, min_gap_us = 0;
    int on_cpu = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|kkpk", keywords, &repeat_us, &depth, &on_cpu, &min_gap_us))
        return NULL;
    if (depth == 0 || depth > MAX_DEPTH) {
        PyErr_Format(PyExc_ValueError, "depth must be in 1..%d", MAX_DEPTH);
        return NULL;
    }
    cpu_set_t cpus;
    int one_cpu = sched_getaffinity(0, sizeof cpus, &cpus) == 0 && CPU_COUNT(&cpus) == 1;
    pthread_mutex_lock(&watch_lock);
    watch_repeat_ns = (uint64_t)repeat_us * 1000ull;
    watch_min_gap_ns = (uint64_t)min_gap_us * 1000ull;
    watch_depth = (uint32_t)depth;
    watch_on_cpu = on_cpu && !one_cpu;
    int was = watching;
    if (was)
        watch_arm(1); /* running: it plans again with the new settings */
    pthread_mutex_unlock(&watch_lock);
    if (was)
        Py_RETURN_NONE;
    if (prepare() != 0)
        return NULL;
    if (watch_tfd < 0 && (watch_tfd = timerfd_create(CLOCK_REALTIME, TFD_CLOEXEC | TFD_NONBLOCK)) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return NULL;
    }
    pthread_mutex_lock(&watch_lock);
    watch_clear();
    watch_arm(WATCH_NEVER);
    pthread_mutex_unlock(&watch_lock);
    watch_spans = watch_reads = watch_full = watch_cpu_ns = watch_wakeups = 0;
    watch_native_id = 0;
    watching = 1;
    if (pthread_create(&watch_thread, NULL, watcher_main, NULL) != 0) {
        watching = 0;
        PyErr_SetString(PyExc_OSError, "could not start the slow-span watcher thread");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *watch_stop(PyObject *self, PyObject *unused)
{
    if (watching) {
        pthread_mutex_lock(&watch_lock);
        watching = 0;
        watch_arm(1); /* out of its poll at once */
        pthread_mutex_unlock(&watch_lock);
        Py_BEGIN_ALLOW_THREADS pthread_join(watch_thread, NULL);
        Py_END_ALLOW_THREADS
    }
    pthread_mutex_lock(&watch_lock);
    watch_clear();
    watch_arm(WATCH_NEVER);
    pthread_mutex_unlock(&watch_lock);
    Py_RETURN_NONE;
}

/* watch(span_id, due_unix_ns, ident=0, tid=0) -> bool: the span of the calling thread
 * (or of the thread `ident`, native id `tid`), read once it is open at due_unix_ns.
 * False: not watched (the watcher is not running, or the table is full). */
static PyObject *watch(PyObject *self, PyObject *args)
{
    unsigned long long key, due, ident_in = 0, tid_in = 0;
    if (!PyArg_ParseTuple(args, "KK|KK", &key, &due, &ident_in, &tid_in))
        return NULL;
    if (!watching)
        Py_RETURN_FALSE;
    uint64_t ident = ident_in ? ident_in : PyThread_get_thread_ident();
    uint64_t tid = ident_in ? tid_in : PyThread_get_thread_native_id();
    const PyThreadState *ts = ident_in ? NULL : PyThreadState_Get();
    int added = 0;
    pthread_mutex_lock(&watch_lock);
    int found = watch_find(key);
    watch_t *w = NULL;
    if (found >= 0)
        w = &watched[watch_index[found]];
    else if (watched_len < WATCH_SLOTS) {
        uint32_t i = watch_hash(key);
        for (int probe = 0; probe < WATCH_PROBE; probe++, i = (i + 1) & (WATCH_SLOTS - 1))
            if (watch_index[i] < 0) {
                w = &watched[watched_len];
                w->at = i;
                watch_index[i] = (int32_t)watched_len++;
                break;
            }
    }
    if (w != NULL) {
        w->key = key;
        w->ident = ident;
        w->tid = tid;
        w->ts = ts;
        w->due_ns = w->slow_ns = due;
        w->reads = 0;
        added = 1;
        /* due well before the planned wake-up: the timer moves (the watcher sleeps on) */
        if (due + WATCH_SLACK_NS < watch_next)
            watch_arm(due);
    } else
        watch_full++;
    pthread_mutex_unlock(&watch_lock);
    return PyBool_FromLong(added);
}

/* unwatch(span_id) -> int: the span ended; how many times it was read (-1: it was not
 * registered). The timer set for it moves to the next span's turn. */
static PyObject *unwatch(PyObject *self, PyObject *arg)
{
    unsigned long long key = PyLong_AsUnsignedLongLong(arg);
    if (key == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    long reads = -1;
    pthread_mutex_lock(&watch_lock);
    int i = watch_find(key);
    if (i >= 0) {
        watch_t *w = &watched[watch_index[i]];
        reads = (long)w->reads;
        int was_next = w->due_ns == watch_next;
        watch_delete((uint32_t)i);
        if (was_next && watching)
            watch_arm(watch_soonest());
    }
    pthread_mutex_unlock(&watch_lock);
    return PyLong_FromLong(reads);
}

static PyObject *watch_stats(PyObject *self, PyObject *unused)
{
    pthread_mutex_lock(&watch_lock);
    unsigned int open = watched_len;
    pthread_mutex_unlock(&watch_lock);
    return Py_BuildValue("{sisIsKsKsKsKsKsi}", "watching", (int)watching, "open", open, "spans",
                         (unsigned long long)watch_spans, "reads", (unsigned long long)watch_reads,
                         "full", (unsigned long long)watch_full, "cpu_ns", (unsigned long long)watch_cpu_ns,
                         "wakeups", (unsigned long long)watch_wakeups, "native_id", (int)watch_native_id);
}

/* A forked child has no sampler thread, and its locks may have been held at the fork. */
static void after_fork_in_child(void)
{
    running = 0;
    sampler_native_id = 0;
    sampler_tid = 0;
    in_flight = 0; /* the parent's requests are the parent's */
    pthread_mutex_init(&lock, NULL);
    pthread_mutex_init(&arm_lock, NULL);
    tick_at = 0;
    drop_fd(&wall_tfd); /* shared file descriptions with the parent: not ours */
    drop_fd(&wall_efd);
    pthread_mutex_init(&slots_lock, NULL);
    memset(slots, 0, sizeof slots); /* timers are not inherited */
    watching = 0; /* nor the watcher thread, nor the parent's spans */
    watch_native_id = 0;
    pthread_mutex_init(&watch_lock, NULL);
    watch_clear();
    drop_fd(&watch_tfd); /* the parent's timer (a shared file description): not ours */
    watch_next = WATCH_NEVER;
    ring_len = 0;                   /* the parent's samples are the parent's */
}

static PyObject *limit_names(PyObject *self, PyObject *args)
{
    unsigned long n;
    if (!PyArg_ParseTuple(args, "k", &n))
        return NULL;
    pthread_mutex_lock(&lock);
    names_limit = n == 0 || n > MAX_NAMES ? MAX_NAMES : (uint32_t)n;
    pthread_mutex_unlock(&lock);
    Py_RETURN_NONE;
}

static PyObject *probe_interval(PyObject *self, PyObject *args)
{
    unsigned long us;
    if (!PyArg_ParseTuple(args, "k", &us))
        return NULL;
    probe_ns = us == 0 ? 1000000000ull : (uint64_t)us * 1000ull;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"start", (PyCFunction)(void (*)(void))start, METH_VARARGS | METH_KEYWORDS,
     "start(interval_us=10000, depth=128, clock='wall', threads='holder'|'all', on_cpu=False, "
     "scope='process'|'requests', slice_us=100, stamps=True): start sampling; on_cpu: a GIL holder's sample is kept only if "
     "it ran while read; scope='requests': only while a request is open (request_started/request_ended); "
     "slice_us: the scheduler slice the sampler thread asks for, so that its ticks come on time on a busy "
     "machine (0: the kernel's default); stamps: tell a holder this thread's wake-up set aside from one that "
     "waited by the scheduler's stamps (False: look again after 0.1 ms only)."},
    {"configure", (PyCFunction)(void (*)(void))configure, METH_VARARGS | METH_KEYWORDS,
     "configure(interval_us, depth, threads='holder', scope='process'): new settings for the running wall clock."},
    {"request_started", request_started, METH_NOARGS, "request_started(): a request (local root span) opened."},
    {"request_ended", request_ended, METH_NOARGS, "request_ended(): a request closed."},
    {"stop", stop, METH_NOARGS, "stop(): end the sampler thread (its samples stay to drain)."},
    {"drain", drain, METH_NOARGS, "drain() -> [(monotonic ns, native tid, frames innermost first)]."},
    {"take", take, METH_VARARGS, "take(generation, known) -> (generation, new names, samples, watermark_ns)."},
    {"stats", stats, METH_NOARGS, "stats() -> ticks, idle_ticks, samples, errors, dropped, cpu_ns, ..."},
    {"limit_names", limit_names, METH_VARARGS, "limit_names(n): frames cached before a new generation (0: the default)."},
    {"probe_interval", probe_interval, METH_VARARGS,
     "probe_interval(us): the looks outside requests (scope='requests'), every us (0: a second)."},
    {"track_current", track_current, METH_NOARGS, "track_current() -> bool: time this thread now (clock 'thread')."},
    {"watch_start", (PyCFunction)(void (*)(void))watch_start, METH_VARARGS | METH_KEYWORDS,
     "watch_start(repeat_us=50000, depth=128, on_cpu=True, min_gap_us=0): start the slow-span watcher "
     "(running: new settings)."},
    {"watch_stop", watch_stop, METH_NOARGS, "watch_stop(): end the watcher; every watched span is forgotten."},
    {"watch", watch, METH_VARARGS,
     "watch(span_id, due_unix_ns, ident=0, tid=0) -> bool: read this thread (or that one) once its span is open then."},
    {"unwatch", unwatch, METH_O, "unwatch(span_id) -> int: the span ended; the reads it got (-1: not registered)."},
    {"watch_stats", watch_stats, METH_NOARGS, "watch_stats() -> watching, open, spans, reads, full, cpu_ns, ..."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native_sampler", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__native_sampler(void)
{
    static int ready = 0;
    if (!ready) {
        pthread_atfork(NULL, NULL, after_fork_in_child);
        memset(watch_index, 0xff, sizeof watch_index); /* no span registered */
        ready = 1;
    }
    return PyModule_Create(&module);
}
