/*
 * A native in-process sampler of Python stacks, for bench/other_samplers.py and
 * bench/native_sampler_services.py (docs/benchmarks.md, "Other samplers, and a native
 * one of our own").
 *
 * A native thread that holds no GIL and runs no Python reads frames with
 * process_vm_readv on its own process, as py-spy reads them from outside: a freed or
 * unmapped address is an error returned, never a fault, and a stack read while it
 * changes is cut short, not followed into garbage. Samples go to a ring buffer that
 * Python drains. CPython 3.11 and 3.12 only (their frame, thread and GIL layouts,
 * from the interpreter's internal headers at build time).
 *
 * Four clocks:
 *   wall    the GIL holder at exponential gaps of wall time (clock_nanosleep): py-spy
 *           --gil's reading, and a tick that finds the GIL free costs one wake-up;
 *   thread  a POSIX timer on each Python thread's own CPU clock, period 1 ns, so that
 *           it fires at every scheduler tick that finds that thread on a CPU, signalled
 *           (SIGEV_THREAD_ID) to the sampler thread, which reads that thread's stack:
 *           nothing while the service sleeps; threads listed again every 100 ms;
 *   tick    the GIL holder at every tick of the process's CPU clock;
 *   cpu     the GIL holder at exponential gaps of the process's CPU clock.
 * tick and cpu charge any thread's CPU to the GIL holder and are kept to show it.
 *
 * An experiment in bench/ (session 40), not the agent's profiler.
 */
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
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define MAX_DEPTH 64
#define RING 16384
#define CODES 8192 /* code cache slots (open addressing) */
#define NAME_MAX_LEN 200

typedef struct {
    uint64_t ts_ns;
    uint64_t tid;
    uint32_t depth;
    uint32_t ids[MAX_DEPTH]; /* innermost first; index into names */
} sample_t;

typedef struct {
    const void *code;
    const void *name_ptr;
    const void *file_ptr;
    int firstlineno;
    uint32_t id;
} code_slot_t;

static pid_t self_pid;
static pthread_t sampler_thread;
static volatile int running = 0;
static uint64_t interval_ns = 10000000;
static uint32_t max_depth = MAX_DEPTH;
static struct _gil_runtime_state *gil;
static int cpu_clock = 0; /* 0 wall, 1 cpu (exponential CPU gaps), 2 tick (every tick), 3 thread */
#define TICK_SIGNAL (SIGRTMAX - 3)

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER; /* ring, names */
static sample_t *ring;
static uint32_t ring_head, ring_len;
static code_slot_t codes[CODES];
static char **names;
static uint32_t names_len, names_cap;

static uint64_t ticks, idle_ticks, samples, errors, dropped, cpu_ns;

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

/* The id of a code object's "qualname (filename)", read once per code object. */
static int code_id(const PyCodeObject *code, uint32_t *id)
{
    PyCodeObject co;
    if (safe_read(&co, code, offsetof(PyCodeObject, co_code_adaptive)) != 0)
        return -1;
    uint32_t h = (uint32_t)(((uintptr_t)code >> 4) * 2654435761u) % CODES;
    for (uint32_t probe = 0; probe < CODES; probe++, h = (h + 1) % CODES) {
        code_slot_t *slot = &codes[h];
        if (slot->code == code && slot->name_ptr == co.co_qualname &&
            slot->file_ptr == co.co_filename && slot->firstlineno == co.co_firstlineno) {
            *id = slot->id;
            return 0;
        }
        if (slot->code == NULL || slot->code == code) { /* new, or an address reused */
            char name[NAME_MAX_LEN], file[NAME_MAX_LEN], both[2 * NAME_MAX_LEN + 4];
            read_str(co.co_qualname, name, sizeof name);
            read_str(co.co_filename, file, sizeof file);
            snprintf(both, sizeof both, "%s (%s)", name, file);
            if (names_len == names_cap) {
                uint32_t cap = names_cap ? 2 * names_cap : 1024;
                char **grown = realloc(names, cap * sizeof *names);
                if (grown == NULL)
                    return -1;
                names = grown;
                names_cap = cap;
            }
            names[names_len] = strdup(both);
            if (names[names_len] == NULL)
                return -1;
            slot->code = code;
            slot->name_ptr = co.co_qualname;
            slot->file_ptr = co.co_filename;
            slot->firstlineno = co.co_firstlineno;
            slot->id = names_len++;
            *id = slot->id;
            return 0;
        }
    }
    return -1; /* the cache is full */
}

/* Walk the frames from `frame` outwards and keep them as one sample of thread `tid`. */
static void record(const _PyInterpreterFrame *frame, unsigned long tid)
{
    sample_t s;
    s.ts_ns = now_ns(CLOCK_MONOTONIC);
    s.tid = tid;
    s.depth = 0;
    pthread_mutex_lock(&lock);
    while (frame != NULL && s.depth < max_depth) {
        _PyInterpreterFrame f;
        if (safe_read(&f, frame, offsetof(_PyInterpreterFrame, localsplus)) != 0 ||
            code_id(f.f_code, &s.ids[s.depth]) != 0) {
            errors++;
            break;
        }
        s.depth++;
        frame = f.previous;
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
    record(cframe.current_frame, ts.native_thread_id);
}

static uint64_t exp_gap(unsigned int *seed)
{
    double u = (rand_r(seed) + 1.0) / ((double)RAND_MAX + 2.0);
    return (uint64_t)(-log(u) * (double)interval_ns); /* exponential gaps: no aliasing */
}

static void wall_loop(unsigned int *seed, clockid_t own)
{
    uint64_t next = now_ns(CLOCK_MONOTONIC);
    while (running) {
        next += exp_gap(seed);
        uint64_t now = now_ns(CLOCK_MONOTONIC);
        if (next < now)
            next = now; /* behind: no catch-up burst */
        struct timespec at = {(time_t)(next / 1000000000ull), (long)(next % 1000000000ull)};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL) == EINTR) {
        }
        if (!running)
            break;
        ticks++;
        sample_holder();
        cpu_ns = now_ns(own);
    }
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
#define MAX_THREADS 512
#define REFRESH_NS 100000000ull
typedef struct {
    const PyThreadState *tstate;
    unsigned long tid;
    timer_t timer;
    int used, seen;
} thread_slot_t;
static thread_slot_t slots[MAX_THREADS];
static pthread_mutex_t slots_lock = PTHREAD_MUTEX_INITIALIZER; /* sampler and track_current() */
static PyInterpreterState *main_interp;
static pid_t sampler_tid;
static uint64_t threads_timed;

/* A timer on thread `tid`'s CPU clock into free slot `i`, every tick it runs
 * (under slots_lock); 0 if made. */
static int time_thread(int i, const PyThreadState *tstate, unsigned long tid)
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
            time_thread(free_slot, t, ts.native_thread_id) == 0)
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
    record(cframe.current_frame, tid);
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
    main_interp = PyInterpreterState_Main();
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

static void *sampler_main(void *unused)
{
    (void)unused;
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

static PyObject *start(PyObject *self, PyObject *args)
{
    unsigned long interval_us = 10000, depth = MAX_DEPTH;
    const char *clock = "wall";
    if (!PyArg_ParseTuple(args, "|kks", &interval_us, &depth, &clock))
        return NULL;
    if (strcmp(clock, "wall") != 0 && strcmp(clock, "cpu") != 0 && strcmp(clock, "tick") != 0 &&
        strcmp(clock, "thread") != 0) {
        PyErr_Format(PyExc_ValueError, "clock must be 'wall', 'cpu', 'tick' or 'thread', not %R", PyTuple_GET_ITEM(args, 2));
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
    if (ring == NULL && (ring = calloc(RING, sizeof *ring)) == NULL)
        return PyErr_NoMemory();
#if PY_VERSION_HEX >= 0x030c0000
    gil = PyInterpreterState_Main()->ceval.gil;
#else
    gil = &_PyRuntime.ceval.gil;
#endif
    self_pid = getpid();
    interval_ns = (uint64_t)interval_us * 1000ull;
    max_depth = (uint32_t)depth;
    cpu_clock = strcmp(clock, "cpu") == 0      ? 1
                : strcmp(clock, "tick") == 0   ? 2
                : strcmp(clock, "thread") == 0 ? 3
                                               : 0;
    ticks = idle_ticks = samples = errors = dropped = cpu_ns = 0;
    running = 1;
    if (pthread_create(&sampler_thread, NULL, sampler_main, NULL) != 0) {
        running = 0;
        PyErr_SetString(PyExc_OSError, "could not start the sampler thread");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *stop(PyObject *self, PyObject *unused)
{
    if (running) {
        running = 0;
        if (cpu_clock)
            pthread_kill(sampler_thread, TICK_SIGNAL); /* out of sigwaitinfo */
        Py_BEGIN_ALLOW_THREADS pthread_join(sampler_thread, NULL);
        Py_END_ALLOW_THREADS
    }
    Py_RETURN_NONE;
}

/* [(ts_ns, native_tid, (innermost "qualname (file)", ...)), ...] since the last drain. */
static PyObject *drain(PyObject *self, PyObject *unused)
{
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    pthread_mutex_lock(&lock);
    for (; ring_len > 0; ring_len--, ring_head = (ring_head + 1) % RING) {
        sample_t *s = &ring[ring_head];
        PyObject *stack = PyTuple_New(s->depth);
        if (stack == NULL)
            break;
        for (uint32_t i = 0; i < s->depth; i++)
            PyTuple_SET_ITEM(stack, i, PyUnicode_DecodeLatin1(names[s->ids[i]], strlen(names[s->ids[i]]), "replace"));
        PyObject *item = Py_BuildValue("(KKN)", (unsigned long long)s->ts_ns, (unsigned long long)s->tid, stack);
        if (item == NULL || PyList_Append(out, item) != 0) {
            Py_XDECREF(item);
            break;
        }
        Py_DECREF(item);
    }
    pthread_mutex_unlock(&lock);
    if (PyErr_Occurred()) {
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

static PyObject *stats(PyObject *self, PyObject *unused)
{
    return Py_BuildValue("{sKsKsKsKsKsKsIsK}", "ticks", (unsigned long long)ticks, "idle_ticks",
                         (unsigned long long)idle_ticks, "samples", (unsigned long long)samples,
                         "errors", (unsigned long long)errors, "dropped", (unsigned long long)dropped,
                         "cpu_ns", (unsigned long long)cpu_ns, "code_names", names_len, "threads_timed", (unsigned long long)threads_timed);
}

/* In a thread that just started (threading.Thread._bootstrap_inner patched to call it
 * first): its timer now, not at the next listing, which a thread-per-request server's
 * threads may not live to see. */
static PyObject *track_current(PyObject *self, PyObject *unused)
{
    const PyThreadState *tstate = PyThreadState_Get();
    unsigned long tid = PyThread_get_thread_native_id();
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
        made = time_thread(free_slot, tstate, tid) == 0;
    pthread_mutex_unlock(&slots_lock);
    return PyBool_FromLong(made || known);
}

static PyMethodDef methods[] = {
    {"track_current", track_current, METH_NOARGS, "track_current() -> bool: time this thread now (clock 'thread')."},
    {"start", start, METH_VARARGS, "start(interval_us=10000, depth=64, clock='wall'|'cpu'): sample the GIL holder."},
    {"stop", stop, METH_NOARGS, "stop(): end the sampler thread (its samples stay to drain)."},
    {"drain", drain, METH_NOARGS, "drain() -> [(ts_ns, native_tid, frames innermost first)]."},
    {"stats", stats, METH_NOARGS, "stats() -> ticks, idle_ticks, samples, errors, dropped, cpu_ns."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native_sampler", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__native_sampler(void)
{
    return PyModule_Create(&module);
}
