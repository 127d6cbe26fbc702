/*
 * A fake NVML (libnvidia-ml.so.1) for tests and benchmarks on machines without a GPU.
 *
 * It exports the NVML entry points the exporter (and nvitop-exporter) call, with the real C
 * signatures and struct layouts, so pynvml's ctypes marshalling runs unchanged against it.
 * It plays several GPUs, MIG devices, per-GPU "not supported" features, a GPU that is lost and
 * recovers at the next full re-initialisation, Xid events through event sets, NVLink counters,
 * and the ~20 ms that nvmlDeviceGetPcieThroughput blocks in the real driver.
 *
 * State is set by text commands, one per line (see tests/fake_nvml/__init__.py for the list):
 *   - from the file named by FAKE_NVML_CONFIG, read when the library loads;
 *   - from the file named by FAKE_NVML_CONTROL, an append-only file whose new lines are applied
 *     while the library runs (so a test can lose a GPU inside an exporter subprocess);
 *   - in-process through fake_nvml_configure() / fake_nvml_command().
 * fake_nvml_calls() counts calls per function and GPU, so tests can check what was (not) called.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- NVML types (layouts as in nvml.h; checked against pynvml by the tests) ---------------- */

typedef int nvmlReturn_t;
typedef struct fake_device *nvmlDevice_t;
typedef struct fake_event_set *nvmlEventSet_t;

#define NVML_SUCCESS 0
#define NVML_ERROR_UNINITIALIZED 1
#define NVML_ERROR_INVALID_ARGUMENT 2
#define NVML_ERROR_NOT_SUPPORTED 3
#define NVML_ERROR_NOT_FOUND 6
#define NVML_ERROR_INSUFFICIENT_SIZE 7
#define NVML_ERROR_DRIVER_NOT_LOADED 9
#define NVML_ERROR_TIMEOUT 10
#define NVML_ERROR_FUNCTION_NOT_FOUND 13
#define NVML_ERROR_GPU_IS_LOST 15
#define NVML_ERROR_ARGUMENT_VERSION_MISMATCH 25
#define NVML_ERROR_UNKNOWN 999

typedef struct { unsigned int gpu, memory; } nvmlUtilization_t;
typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
typedef struct {
    unsigned int version;
    unsigned long long total, reserved, free, used;
} nvmlMemory_v2_t;
#define nvmlMemory_v2 0x02000028u
typedef struct {
    unsigned int version;
    int sensorType;
    int temperature;
} nvmlTemperature_v1_t;
#define nvmlTemperature_v1 0x0100000Cu
typedef struct {
    char busIdLegacy[16];
    unsigned int domain, bus, device, pciDeviceId, pciSubSystemId;
    char busId[32];
} nvmlPciInfo_t;
typedef union {
    double dVal;
    unsigned int uiVal;
    unsigned long ulVal;
    unsigned long long ullVal;
    long long sllVal;
    int siVal;
    unsigned short usVal;
} nvmlValue_t;
typedef struct {
    unsigned int fieldId, scopeId;
    long long timestamp, latencyUsec;
    int valueType;
    nvmlReturn_t nvmlReturn;
    nvmlValue_t value;
} nvmlFieldValue_t;
typedef struct {
    nvmlDevice_t device;
    unsigned long long eventType, eventData;
    unsigned int gpuInstanceId, computeInstanceId;
} nvmlEventData_t;
typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId, computeInstanceId;
} nvmlProcessInfo_t;

_Static_assert(sizeof(nvmlFieldValue_t) == 40, "nvmlFieldValue_t is 40 bytes on x86-64");
_Static_assert(sizeof(nvmlMemory_v2_t) == 40, "nvmlMemory_v2_t is 40 bytes");
_Static_assert(sizeof(nvmlMemory_t) == 24, "nvmlMemory_t is 24 bytes");
_Static_assert(sizeof(nvmlPciInfo_t) == 68, "nvmlPciInfo_t is 68 bytes");
_Static_assert(sizeof(nvmlEventData_t) == 32, "nvmlEventData_t is 32 bytes");
_Static_assert(sizeof(nvmlProcessInfo_t) == 24, "nvmlProcessInfo_v2_t is 24 bytes");
_Static_assert(sizeof(nvmlTemperature_v1_t) == 12, "nvmlTemperature_v1_t is 12 bytes");

#define VT_DOUBLE 0
#define VT_UINT 1
#define VT_ULL 3

#define FI_ECC_SBE_VOL_TOTAL 3
#define FI_ECC_DBE_VOL_TOTAL 4
#define FI_NVLINK_CRC_FLIT_TOTAL 38
#define FI_NVLINK_CRC_DATA_TOTAL 45
#define FI_NVLINK_REPLAY_TOTAL 52
#define FI_NVLINK_RECOVERY_TOTAL 59
#define FI_MEMORY_TEMP 82
#define FI_NVLINK_LINK_COUNT 91
#define FI_NVLINK_TX_DATA 138
#define FI_NVLINK_RX_DATA 139
#define FI_NVLINK_GET_STATE 165
#define FI_GPU_RECOVERY_ACTION 230

#define EVENT_XID 0x8ull
#define DELIM " \t\r\n"
#define UINT_NA 0xFFFFFFFFu

/* ---- Fake state ------------------------------------------------------------------------------ */

#define MAX_GPUS 64
#define MAX_LINKS 36
#define MAX_MIG 7
#define MAX_PROCS 16
#define MAX_SETS 16
#define QUEUE 1024

enum feature {
    F_UTILIZATION, F_MEMORY_V2, F_TEMPERATURE, F_MEMORY_TEMPERATURE, F_POWER, F_POWER_LIMIT,
    F_ENERGY, F_CLOCKS, F_VIDEO_CLOCK, F_CLOCK_REASONS, F_PCIE_REPLAY, F_NVLINK, F_NVLINK_ERRORS,
    F_ECC, F_REMAPPED_ROWS, F_MIG, F_PROCESSES, F_EVENTS, F_FIELD_VALUES, F_NVLINK_STATE_FIELD,
    F_COUNT
};
static const char *FEATURES[F_COUNT] = {
    "utilization", "memory_v2", "temperature", "memory_temperature", "power", "power_limit",
    "energy", "clocks", "video_clock", "clock_reasons", "pcie_replay", "nvlink", "nvlink_errors",
    "ecc", "remapped_rows", "mig", "processes", "events", "field_values", "nvlink_state_field",
};

struct process { unsigned int pid, gi, ci; unsigned long long used; char name[64]; };

enum { KIND_GPU, KIND_MIG };
enum { HEALTH_OK, HEALTH_LOST, HEALTH_UNKNOWN };

struct fake_device {
    int kind, index;             /* GPU index, or MIG index under `parent` */
    struct fake_device *parent;
    unsigned int gi, ci;         /* MIG device: GPU and compute instance ids */
    /* GPU only: */
    int health, recover_pending, utilization_fixed;
    unsigned int unsupported;    /* bit per enum feature */
    int mig_mode, mig_count;
    long long reasons;           /* clock event bitmask, -1: derived from utilization */
    unsigned long long link_down; /* bit per link */
    double link_base_tx[MAX_LINKS], link_base_rx[MAX_LINKS], link_since[MAX_LINKS];
    unsigned long long ecc[2], nvlink_errors[4], pcie_replays;
    unsigned int remap[4];
    int recovery_action;         /* nvmlDeviceGpuRecoveryAction_t; -1: NotSupported */
    int nprocs;
    struct process procs[MAX_PROCS];
};

struct fake_event_set {
    int used, freed;
    unsigned long long mask[MAX_GPUS];
    struct { int gpu; unsigned long long xid; } queue[QUEUE];
    unsigned int head, tail;
};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cond;
static struct fake_device g_gpu[MAX_GPUS];
static struct fake_device g_mig[MAX_GPUS][MAX_MIG];
static struct fake_event_set g_sets[MAX_SETS];
static int g_count, g_links, g_refcount, g_init_count, g_driver_loaded;
static long g_pcie_us;
static char g_name[96], g_driver[80];
static int g_cuda;
static double g_epoch;
static char g_control[4096];
static off_t g_control_off;
static double g_next_poll;

#define FUNCTIONS(X)                                                                           \
    X(nvmlInitWithFlags) X(nvmlShutdown) X(nvmlSystemGetDriverVersion) X(nvmlSystemGetNVMLVersion) \
    X(nvmlSystemGetCudaDriverVersion) X(nvmlSystemGetProcessName) X(nvmlDeviceGetCount_v2)         \
    X(nvmlDeviceGetHandleByIndex_v2) X(nvmlDeviceGetHandleByUUID) X(nvmlDeviceGetIndex)            \
    X(nvmlDeviceGetHandleByPciBusId_v2)                                                            \
    X(nvmlDeviceGetName) X(nvmlDeviceGetUUID) X(nvmlDeviceGetPciInfo_v3)                           \
    X(nvmlDeviceGetUtilizationRates) X(nvmlDeviceGetMemoryInfo) X(nvmlDeviceGetMemoryInfo_v2)      \
    X(nvmlDeviceGetTemperature) X(nvmlDeviceGetTemperatureV) X(nvmlDeviceGetPowerUsage)            \
    X(nvmlDeviceGetEnforcedPowerLimit) X(nvmlDeviceGetPowerManagementLimit)                        \
    X(nvmlDeviceGetTotalEnergyConsumption) X(nvmlDeviceGetClockInfo) X(nvmlDeviceGetMaxClockInfo)  \
    X(nvmlDeviceGetCurrentClocksEventReasons) X(nvmlDeviceGetCurrentClocksThrottleReasons)         \
    X(nvmlDeviceGetFanSpeed) X(nvmlDeviceGetEncoderUtilization) X(nvmlDeviceGetDecoderUtilization) \
    X(nvmlDeviceGetPcieReplayCounter) X(nvmlDeviceGetPcieThroughput) X(nvmlDeviceGetNvLinkState)   \
    X(nvmlDeviceGetFieldValues) X(nvmlDeviceGetTotalEccErrors) X(nvmlDeviceGetRemappedRows)        \
    X(nvmlDeviceGetMigMode) X(nvmlDeviceGetMaxMigDeviceCount) X(nvmlDeviceGetMigDeviceHandleByIndex) \
    X(nvmlDeviceIsMigDeviceHandle) X(nvmlDeviceGetDeviceHandleFromMigDeviceHandle)                 \
    X(nvmlDeviceGetGpuInstanceId) X(nvmlDeviceGetComputeInstanceId)                                \
    X(nvmlDeviceGetComputeRunningProcesses_v3) X(nvmlDeviceGetGraphicsRunningProcesses_v3)         \
    X(nvmlDeviceGetMPSComputeRunningProcesses_v3) X(nvmlEventSetCreate)                            \
    X(nvmlDeviceGetSupportedEventTypes) X(nvmlDeviceRegisterEvents) X(nvmlEventSetWait_v2)         \
    X(nvmlEventSetWait) X(nvmlEventSetFree)
#define AS_ENUM(x) FN_##x,
#define AS_NAME(x) #x,
enum fn { FUNCTIONS(AS_ENUM) FN_COUNT };
static const char *FN_NAMES[FN_COUNT] = {FUNCTIONS(AS_NAME)};
static unsigned long long g_calls[FN_COUNT][MAX_GPUS + 1];
static unsigned char g_missing[FN_COUNT]; /* entry points that answer FunctionNotFound */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double t_s(void) { return now_s() - g_epoch; }

static const unsigned int BUSES[8] = {0x18, 0x2A, 0x3A, 0x5D, 0x9A, 0xAB, 0xBA, 0xDB};
#define MIB (1024ull * 1024ull)
#define MEMORY_TOTAL (81559ull * MIB)
#define MEMORY_RESERVED (510ull * MIB)
#define MIG_TOTAL (9856ull * MIB)

static void reset_gpus(int n) {
    if (n < 0) n = 0;
    if (n > MAX_GPUS) n = MAX_GPUS;
    g_count = n;
    memset(g_gpu, 0, sizeof g_gpu);
    memset(g_mig, 0, sizeof g_mig);
    double t = t_s();
    for (int i = 0; i < MAX_GPUS; i++) {
        struct fake_device *g = &g_gpu[i];
        g->kind = KIND_GPU;
        g->index = i;
        g->reasons = -1;
        g->utilization_fixed = -1;
        for (int l = 0; l < MAX_LINKS; l++) g->link_since[l] = t;
        for (int m = 0; m < MAX_MIG; m++) {
            struct fake_device *d = &g_mig[i][m];
            d->kind = KIND_MIG;
            d->index = m;
            d->parent = g;
            d->gi = 1 + m;
            d->ci = 0;
        }
    }
}

static void reset_all(void) {
    reset_gpus(8);
    g_links = 18;
    g_pcie_us = 20000;
    g_driver_loaded = 1;
    g_refcount = 0;
    g_init_count = 0;
    g_cuda = 12040;
    snprintf(g_name, sizeof g_name, "NVIDIA H100 80GB HBM3");
    snprintf(g_driver, sizeof g_driver, "550.90.07");
    memset(g_sets, 0, sizeof g_sets);
    memset(g_calls, 0, sizeof g_calls);
    memset(g_missing, 0, sizeof g_missing);
}

/* ---- Derived values (functions of the time since the library loaded) ------------------------ */

static unsigned int utilization(const struct fake_device *g) {
    if (g->utilization_fixed >= 0) return (unsigned int)g->utilization_fixed;
    double u = 55.0 + 40.0 * sin(t_s() / 20.0 + g->index);
    return (unsigned int)(u < 0 ? 0 : u > 100 ? 100 : u);
}

static unsigned long long memory_used(const struct fake_device *g) {
    unsigned long long used = (20ull + 5ull * g->index) * 1024ull * MIB;
    for (int p = 0; p < g->nprocs; p++) used += g->procs[p].used;
    return used < MEMORY_TOTAL - MEMORY_RESERVED ? used : MEMORY_TOTAL - MEMORY_RESERVED;
}

static double link_rate_tx(const struct fake_device *g, int l) {  /* KiB/s */
    return 400000.0 + 10000.0 * g->index + 1000.0 * l;
}

static int link_up(const struct fake_device *g, int l) { return !((g->link_down >> l) & 1ull); }

static unsigned long long link_counter(struct fake_device *g, int l, int rx) {
    double base = rx ? g->link_base_rx[l] : g->link_base_tx[l];
    if (!link_up(g, l)) return (unsigned long long)base;
    double rate = link_rate_tx(g, l) * (rx ? 0.9 : 1.0);
    return (unsigned long long)(base + rate * (t_s() - g->link_since[l]));
}

static void set_link(struct fake_device *g, int l, int up) {
    if (link_up(g, l) == up) return;
    g->link_base_tx[l] = (double)link_counter(g, l, 0);
    g->link_base_rx[l] = (double)link_counter(g, l, 1);
    g->link_since[l] = t_s();
    if (up) g->link_down &= ~(1ull << l);
    else g->link_down |= 1ull << l;
}

static unsigned int temperature(const struct fake_device *g) {
    return 35 + utilization(g) / 3 + (unsigned int)g->index;
}

static unsigned int power_mw(const struct fake_device *g) { return 90000 + 6000 * utilization(g); }

/* ---- Commands --------------------------------------------------------------------------------- */

static void push_xid(int gpu, unsigned long long code, int n) {
    for (int s = 0; s < MAX_SETS; s++) {
        struct fake_event_set *set = &g_sets[s];
        if (!set->used || set->freed || !(set->mask[gpu] & EVENT_XID)) continue;
        for (int k = 0; k < n && set->tail - set->head < QUEUE; k++) {
            set->queue[set->tail % QUEUE].gpu = gpu;
            set->queue[set->tail % QUEUE].xid = code;
            set->tail++;
        }
    }
    pthread_cond_broadcast(&g_cond);
}

static int feature_bit(const char *name) {
    for (int f = 0; f < F_COUNT; f++)
        if (!strcmp(FEATURES[f], name)) return f;
    return -1;
}

/* Apply one command to GPU g; returns 0, or -1 with a message in err. */
static int gpu_command(struct fake_device *g, char **save, char *err, size_t errlen) {
    char *verb = strtok_r(NULL, DELIM, save);
    char *a = strtok_r(NULL, DELIM, save);
    char *b = strtok_r(NULL, DELIM, save);
    char *c = strtok_r(NULL, DELIM, save);
    char *d = strtok_r(NULL, DELIM, save);
    if (!verb) return snprintf(err, errlen, "gpu: missing verb"), -1;
    if (!strcmp(verb, "lost")) g->health = HEALTH_LOST;
    else if (!strcmp(verb, "unknown")) g->health = HEALTH_UNKNOWN;
    else if (!strcmp(verb, "recover")) g->recover_pending = 1;
    else if (!strcmp(verb, "unsupported") && a) {
        for (char *s2, *f = strtok_r(a, ",", &s2); f; f = strtok_r(NULL, ",", &s2)) {
            int bit = feature_bit(f);
            if (bit < 0) return snprintf(err, errlen, "unknown feature %s", f), -1;
            g->unsupported |= 1u << bit;
        }
    } else if (!strcmp(verb, "mig") && a) {
        g->mig_mode = 1;
        g->mig_count = atoi(a) > MAX_MIG ? MAX_MIG : atoi(a);
    } else if (!strcmp(verb, "process") && a && b && c) {
        if (g->nprocs >= MAX_PROCS) return snprintf(err, errlen, "too many processes"), -1;
        struct process *p = &g->procs[g->nprocs++];
        p->pid = (unsigned int)strtoul(a, NULL, 10);
        snprintf(p->name, sizeof p->name, "%s", b);
        p->used = strtoull(c, NULL, 10);
        p->gi = d ? (unsigned int)atoi(d) : UINT_NA;
        p->ci = d ? 0 : UINT_NA;
    } else if (!strcmp(verb, "clear_processes")) g->nprocs = 0;
    else if (!strcmp(verb, "xid") && a) push_xid(g->index, strtoull(a, NULL, 10), b ? atoi(b) : 1);
    else if (!strcmp(verb, "reasons") && a) g->reasons = strtoll(a, NULL, 0);
    else if (!strcmp(verb, "utilization") && a) g->utilization_fixed = atoi(a);
    else if (!strcmp(verb, "link") && a && b) {
        int l = atoi(a);
        if (l < 0 || l >= MAX_LINKS) return snprintf(err, errlen, "bad link %s", a), -1;
        set_link(g, l, !strcmp(b, "up"));
    } else if (!strcmp(verb, "ecc") && a && b) {
        g->ecc[strcmp(a, "corrected") ? 1 : 0] += strtoull(b, NULL, 10);
    } else if (!strcmp(verb, "nvlink_error") && a && b) {
        static const char *types[4] = {"crc_flit", "crc_data", "replay", "recovery"};
        int k = -1;
        for (int i = 0; i < 4; i++)
            if (!strcmp(types[i], a)) k = i;
        if (k < 0) return snprintf(err, errlen, "unknown nvlink error type %s", a), -1;
        g->nvlink_errors[k] += strtoull(b, NULL, 10);
    } else if (!strcmp(verb, "remap") && a && b && c && d) {
        g->remap[0] = atoi(a), g->remap[1] = atoi(b), g->remap[2] = atoi(c), g->remap[3] = atoi(d);
    } else if (!strcmp(verb, "pcie_replay") && a) g->pcie_replays += strtoull(a, NULL, 10);
    else if (!strcmp(verb, "recovery_action") && a) {
        char *end;
        long action = strtol(a, &end, 10);
        if (!strcmp(a, "unsupported")) g->recovery_action = -1;
        else if (*end || action < 0 || action > 7)
            return snprintf(err, errlen, "recovery_action: 0-7 or unsupported, not %s", a), -1;
        else g->recovery_action = (int)action;
    }
    else return snprintf(err, errlen, "unknown or incomplete gpu command %s", verb), -1;
    return 0;
}

static int apply_line(const char *text, char *err, size_t errlen) {
    char line[512], *save = NULL;
    snprintf(line, sizeof line, "%s", text);
    char *hash = strchr(line, '#');
    if (hash) *hash = 0;
    char *key = strtok_r(line, DELIM, &save);
    if (!key) return 0;
    char *rest = save;
    if (!strcmp(key, "gpus")) reset_gpus(atoi(strtok_r(NULL, DELIM, &save) ?: "0"));
    else if (!strcmp(key, "nvlinks")) g_links = atoi(strtok_r(NULL, DELIM, &save) ?: "0");
    else if (!strcmp(key, "pcie_throughput_us"))
        g_pcie_us = atol(strtok_r(NULL, DELIM, &save) ?: "0");
    else if (!strcmp(key, "driver_loaded"))
        g_driver_loaded = atoi(strtok_r(NULL, DELIM, &save) ?: "1");
    else if (!strcmp(key, "missing")) {
        char *names = strtok_r(NULL, DELIM, &save);
        if (!names) return snprintf(err, errlen, "missing: no function named"), -1;
        for (char *s2, *f = strtok_r(names, ",", &s2); f; f = strtok_r(NULL, ",", &s2)) {
            int k = -1;
            for (int i = 0; i < FN_COUNT; i++)
                if (!strcmp(FN_NAMES[i], f)) k = i;
            if (k < 0) return snprintf(err, errlen, "unknown function %s", f), -1;
            g_missing[k] = 1;
        }
    } else if (!strcmp(key, "cuda")) g_cuda = atoi(strtok_r(NULL, DELIM, &save) ?: "0");
    else if (!strcmp(key, "driver")) snprintf(g_driver, sizeof g_driver, "%s", strtok_r(NULL, DELIM, &save) ?: "");
    else if (!strcmp(key, "name")) {
        while (rest && (*rest == ' ' || *rest == '\t')) rest++;
        snprintf(g_name, sizeof g_name, "%s", rest ? rest : "");
        g_name[strcspn(g_name, "\r\n")] = 0;
    } else if (!strcmp(key, "gpu")) {
        char *which = strtok_r(NULL, DELIM, &save);
        if (!which) return snprintf(err, errlen, "gpu: missing index"), -1;
        int lo = 0, hi = g_count - 1;
        if (strcmp(which, "*")) lo = hi = atoi(which);
        if (lo < 0 || hi >= g_count) return snprintf(err, errlen, "no GPU %s", which), -1;
        for (int i = lo; i <= hi; i++) {
            char copy[512], *rest_of_line = copy;
            snprintf(copy, sizeof copy, "%s", save ? save : "");
            if (gpu_command(&g_gpu[i], &rest_of_line, err, errlen)) return -1;
        }
    } else return snprintf(err, errlen, "unknown command %s", key), -1;
    return 0;
}

static int apply_text(const char *text, char *err, size_t errlen) {
    int lineno = 0;
    const char *p = text;
    while (p && *p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        char line[512];
        snprintf(line, sizeof line, "%.*s", (int)(n < sizeof line ? n : sizeof line - 1), p);
        lineno++;
        if (apply_line(line, err, errlen)) return lineno;
        p = nl ? nl + 1 : NULL;
    }
    return 0;
}

static void apply_file_lines(const char *path, off_t *offset) {
    FILE *f = fopen(path, "r");
    if (!f) return;
    if (fseeko(f, *offset, SEEK_SET) == 0) {
        char line[512], err[256];
        while (fgets(line, sizeof line, f)) {
            size_t n = strlen(line);
            if (n && line[n - 1] != '\n') break; /* a partial last line: wait for the rest */
            *offset += (off_t)n;
            if (apply_line(line, err, sizeof err)) fprintf(stderr, "fake-nvml: %s: %s", err, line);
        }
    }
    fclose(f);
}

static void poll_control(void) {
    if (!g_control[0]) return;
    double now = now_s();
    if (now < g_next_poll) return;
    g_next_poll = now + 0.005;
    struct stat st;
    if (stat(g_control, &st) == 0 && st.st_size > g_control_off) apply_file_lines(g_control, &g_control_off);
}

__attribute__((constructor)) static void fake_load(void) {
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&g_cond, &attr);
    g_epoch = now_s();
    reset_all();
    const char *config = getenv("FAKE_NVML_CONFIG");
    if (config && *config) {
        off_t off = 0;
        apply_file_lines(config, &off);
    }
    const char *control = getenv("FAKE_NVML_CONTROL");
    if (control && *control) snprintf(g_control, sizeof g_control, "%s", control);
}

/* ---- Test hooks --------------------------------------------------------------------------- */

int fake_nvml_configure(const char *text, char *err, size_t errlen) {
    pthread_mutex_lock(&g_lock);
    reset_all();
    int bad = apply_text(text, err, errlen);
    pthread_mutex_unlock(&g_lock);
    return bad;
}

int fake_nvml_command(const char *text, char *err, size_t errlen) {
    pthread_mutex_lock(&g_lock);
    int bad = apply_text(text, err, errlen);
    pthread_mutex_unlock(&g_lock);
    return bad;
}

unsigned long long fake_nvml_calls(const char *name, int gpu) {
    unsigned long long total = 0;
    pthread_mutex_lock(&g_lock);
    for (int f = 0; f < FN_COUNT; f++) {
        if (name && strcmp(FN_NAMES[f], name)) continue;
        for (int i = 0; i <= MAX_GPUS; i++)
            if (gpu < 0 || i == gpu) total += g_calls[f][i];
    }
    pthread_mutex_unlock(&g_lock);
    return total;
}

int fake_nvml_init_count(void) { return g_init_count; }

int fake_nvml_struct_size(const char *name) {
    if (!strcmp(name, "nvmlFieldValue_t")) return sizeof(nvmlFieldValue_t);
    if (!strcmp(name, "nvmlMemory_v2_t")) return sizeof(nvmlMemory_v2_t);
    if (!strcmp(name, "nvmlMemory_t")) return sizeof(nvmlMemory_t);
    if (!strcmp(name, "nvmlPciInfo_t")) return sizeof(nvmlPciInfo_t);
    if (!strcmp(name, "nvmlEventData_t")) return sizeof(nvmlEventData_t);
    if (!strcmp(name, "nvmlProcessInfo_t")) return sizeof(nvmlProcessInfo_t);
    if (!strcmp(name, "nvmlTemperature_v1_t")) return sizeof(nvmlTemperature_v1_t);
    if (!strcmp(name, "nvmlUtilization_t")) return sizeof(nvmlUtilization_t);
    return -1;
}

/* ---- Entry-point helpers ------------------------------------------------------------------- */

#define ENTER(fn)                                                                              \
    pthread_mutex_lock(&g_lock);                                                               \
    poll_control();                                                                            \
    g_calls[FN_##fn][MAX_GPUS]++;                                                              \
    if (g_missing[FN_##fn]) RETURN(NVML_ERROR_FUNCTION_NOT_FOUND)
#define RETURN(x)                                                                              \
    do {                                                                                       \
        nvmlReturn_t r_ = (x);                                                                 \
        pthread_mutex_unlock(&g_lock);                                                         \
        return r_;                                                                             \
    } while (0)

static int valid_device(nvmlDevice_t d) {
    if (d >= &g_gpu[0] && d < &g_gpu[g_count]) return 1;
    if (d >= &g_mig[0][0] && d < &g_mig[0][0] + MAX_GPUS * MAX_MIG) {
        int gpu = (int)((d - &g_mig[0][0]) / MAX_MIG);
        return gpu < g_count && d->parent->mig_mode && d->index < d->parent->mig_count;
    }
    return 0;
}

/* The GPU a call is counted against (MAX_GPUS: no valid device). */
static int gpu_slot(nvmlDevice_t d) {
    if (!d || !valid_device(d)) return MAX_GPUS;
    return d->kind == KIND_GPU ? d->index : d->parent->index;
}

static nvmlReturn_t device_status(nvmlDevice_t d) {
    if (!g_refcount) return NVML_ERROR_UNINITIALIZED;
    if (!d || !valid_device(d)) return NVML_ERROR_INVALID_ARGUMENT;
    struct fake_device *g = d->kind == KIND_GPU ? d : d->parent;
    if (g->health == HEALTH_LOST) return NVML_ERROR_GPU_IS_LOST;
    if (g->health == HEALTH_UNKNOWN) return NVML_ERROR_UNKNOWN;
    return NVML_SUCCESS;
}

/* Enter a device function: count the call, fail on a bad, lost or MIG handle (unless allowed). */
#define ENTER_DEVICE(fn, d, mig_ok)                                                            \
    pthread_mutex_lock(&g_lock);                                                               \
    poll_control();                                                                            \
    do {                                                                                       \
        g_calls[FN_##fn][gpu_slot(d)]++;                                                       \
        if (g_missing[FN_##fn]) RETURN(NVML_ERROR_FUNCTION_NOT_FOUND);                         \
        nvmlReturn_t st_ = device_status(d);                                                   \
        if (st_ != NVML_SUCCESS) RETURN(st_);                                                  \
        if (!(mig_ok) && (d)->kind == KIND_MIG) RETURN(NVML_ERROR_NOT_SUPPORTED);              \
    } while (0)
#define UNSUPPORTED(d, f) ((d)->kind == KIND_GPU ? (d) : (d)->parent)->unsupported & (1u << (f))
#define REQUIRE(d, f)                                                                          \
    if (UNSUPPORTED(d, f)) RETURN(NVML_ERROR_NOT_SUPPORTED)
#define NEED(p)                                                                                \
    if (!(p)) RETURN(NVML_ERROR_INVALID_ARGUMENT)

static void uuid_of(nvmlDevice_t d, char *buf, unsigned int len) {
    if (d->kind == KIND_GPU)
        snprintf(buf, len, "GPU-fa4e%04x-0000-4000-8000-%012d", d->index, d->index);
    else
        snprintf(buf, len, "MIG-fa4e%04x-%04x-4000-8000-%012d", d->parent->index, d->index,
                 d->index);
}

static void bus_id_of(nvmlDevice_t d, char *buf, unsigned int len) {
    snprintf(buf, len, "%08X:%02X:00.0", (unsigned int)(d->index / 8), BUSES[d->index % 8]);
}

/* ---- System ---------------------------------------------------------------------------------- */

static const char *error_string(nvmlReturn_t r) {
    switch (r) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_NOT_FOUND: return "Not Found";
    case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    case NVML_ERROR_TIMEOUT: return "Timeout";
    case NVML_ERROR_FUNCTION_NOT_FOUND: return "Function Not Found";
    case NVML_ERROR_GPU_IS_LOST: return "GPU is lost";
    case NVML_ERROR_ARGUMENT_VERSION_MISMATCH: return "Argument version mismatch";
    default: return "Unknown Error";
    }
}

const char *nvmlErrorString(nvmlReturn_t r) { return error_string(r); }

nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    ENTER(nvmlInitWithFlags);
    if (!g_driver_loaded) RETURN(NVML_ERROR_DRIVER_NOT_LOADED);
    if (g_refcount++ == 0) {
        g_init_count++;
        for (int i = 0; i < g_count; i++)
            if (g_gpu[i].recover_pending) g_gpu[i].health = HEALTH_OK, g_gpu[i].recover_pending = 0;
    }
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlInit_v2(void) { return nvmlInitWithFlags(0); }
nvmlReturn_t nvmlInit(void) { return nvmlInitWithFlags(0); }

nvmlReturn_t nvmlShutdown(void) {
    ENTER(nvmlShutdown);
    if (!g_refcount) RETURN(NVML_ERROR_UNINITIALIZED);
    if (--g_refcount == 0) {
        for (int s = 0; s < MAX_SETS; s++) g_sets[s].freed = 1;
        pthread_cond_broadcast(&g_cond);
    }
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    ENTER(nvmlSystemGetDriverVersion);
    if (!g_refcount) RETURN(NVML_ERROR_UNINITIALIZED);
    NEED(version);
    if (strlen(g_driver) + 1 > length) RETURN(NVML_ERROR_INSUFFICIENT_SIZE);
    snprintf(version, length, "%s", g_driver);
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlSystemGetNVMLVersion(char *version, unsigned int length) {
    ENTER(nvmlSystemGetNVMLVersion);
    NEED(version);
    snprintf(version, length, "12.%s", g_driver);
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlSystemGetCudaDriverVersion(int *v) {
    ENTER(nvmlSystemGetCudaDriverVersion);
    NEED(v);
    *v = g_cuda;
    RETURN(NVML_SUCCESS);
}
nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int *v) { return nvmlSystemGetCudaDriverVersion(v); }

nvmlReturn_t nvmlSystemGetProcessName(unsigned int pid, char *name, unsigned int length) {
    ENTER(nvmlSystemGetProcessName);
    if (!g_refcount) RETURN(NVML_ERROR_UNINITIALIZED);
    NEED(name && length);
    for (int i = 0; i < g_count; i++)
        for (int p = 0; p < g_gpu[i].nprocs; p++)
            if (g_gpu[i].procs[p].pid == pid) {
                snprintf(name, length, "%s", g_gpu[i].procs[p].name);
                RETURN(NVML_SUCCESS);
            }
    RETURN(NVML_ERROR_NOT_FOUND);
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
    ENTER(nvmlDeviceGetCount_v2);
    if (!g_refcount) RETURN(NVML_ERROR_UNINITIALIZED);
    NEED(count);
    *count = (unsigned int)g_count;
    RETURN(NVML_SUCCESS);
}
nvmlReturn_t nvmlDeviceGetCount(unsigned int *count) { return nvmlDeviceGetCount_v2(count); }

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
    ENTER(nvmlDeviceGetHandleByIndex_v2);
    if (!g_refcount) RETURN(NVML_ERROR_UNINITIALIZED);
    NEED(device && index < (unsigned int)g_count);
    nvmlReturn_t st = device_status(&g_gpu[index]);
    if (st != NVML_SUCCESS) RETURN(st);
    *device = &g_gpu[index];
    RETURN(NVML_SUCCESS);
}
nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned int i, nvmlDevice_t *d) {
    return nvmlDeviceGetHandleByIndex_v2(i, d);
}

nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *device) {
    ENTER(nvmlDeviceGetHandleByUUID);
    if (!g_refcount) RETURN(NVML_ERROR_UNINITIALIZED);
    NEED(uuid && device);
    char buf[96];
    for (int i = 0; i < g_count; i++) {
        uuid_of(&g_gpu[i], buf, sizeof buf);
        if (strcmp(buf, uuid)) continue;
        nvmlReturn_t st = device_status(&g_gpu[i]);
        if (st != NVML_SUCCESS) RETURN(st);
        *device = &g_gpu[i];
        RETURN(NVML_SUCCESS);
    }
    RETURN(NVML_ERROR_NOT_FOUND);
}

nvmlReturn_t nvmlDeviceGetHandleByPciBusId_v2(const char *bus_id, nvmlDevice_t *device) {
    ENTER(nvmlDeviceGetHandleByPciBusId_v2);
    if (!g_refcount) RETURN(NVML_ERROR_UNINITIALIZED);
    NEED(bus_id && device);
    char buf[32];
    for (int i = 0; i < g_count; i++) {
        bus_id_of(&g_gpu[i], buf, sizeof buf);
        if (strcasecmp(buf, bus_id)) continue;
        nvmlReturn_t st = device_status(&g_gpu[i]);
        if (st != NVML_SUCCESS) RETURN(st);
        *device = &g_gpu[i];
        RETURN(NVML_SUCCESS);
    }
    RETURN(NVML_ERROR_NOT_FOUND);
}

/* ---- Identity ------------------------------------------------------------------------------- */

nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t d, unsigned int *index) {
    ENTER_DEVICE(nvmlDeviceGetIndex, d, 0);
    NEED(index);
    *index = (unsigned int)d->index;
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t d, char *name, unsigned int length) {
    ENTER_DEVICE(nvmlDeviceGetName, d, 1);
    NEED(name);
    if (d->kind == KIND_GPU) snprintf(name, length, "%s", g_name);
    else snprintf(name, length, "%s MIG 1g.10gb", g_name);
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t d, char *uuid, unsigned int length) {
    ENTER_DEVICE(nvmlDeviceGetUUID, d, 1);
    NEED(uuid);
    uuid_of(d, uuid, length);
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t d, nvmlPciInfo_t *pci) {
    ENTER_DEVICE(nvmlDeviceGetPciInfo_v3, d, 0);
    NEED(pci);
    memset(pci, 0, sizeof *pci);
    pci->domain = (unsigned int)(d->index / 8);
    pci->bus = BUSES[d->index % 8];
    pci->pciDeviceId = 0x233010DE;
    pci->pciSubSystemId = 0x16C110DE;
    bus_id_of(d, pci->busId, sizeof pci->busId);
    snprintf(pci->busIdLegacy, sizeof pci->busIdLegacy, "%04X:%02X:00.0", pci->domain, pci->bus);
    RETURN(NVML_SUCCESS);
}

/* ---- Utilization, memory, thermal, power, clocks ------------------------------------------- */

nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t d, nvmlUtilization_t *u) {
    ENTER_DEVICE(nvmlDeviceGetUtilizationRates, d, 0);
    NEED(u);
    REQUIRE(d, F_UTILIZATION);
    if (d->mig_mode) RETURN(NVML_ERROR_NOT_SUPPORTED); /* as the real driver in MIG mode */
    u->gpu = utilization(d);
    u->memory = u->gpu * 2 / 5;
    RETURN(NVML_SUCCESS);
}

static void fill_memory(nvmlDevice_t d, unsigned long long *total, unsigned long long *reserved,
                        unsigned long long *free, unsigned long long *used) {
    if (d->kind == KIND_MIG) {
        *total = MIG_TOTAL, *reserved = 0;
        *used = 13ull * MIB;
        for (int p = 0; p < d->parent->nprocs; p++)
            if (d->parent->procs[p].gi == d->gi) *used += d->parent->procs[p].used;
        *free = *total - *used;
        return;
    }
    *total = MEMORY_TOTAL, *reserved = MEMORY_RESERVED;
    *used = memory_used(d);
    *free = MEMORY_TOTAL - MEMORY_RESERVED - *used;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t d, nvmlMemory_t *m) {
    ENTER_DEVICE(nvmlDeviceGetMemoryInfo, d, 1);
    NEED(m);
    unsigned long long reserved;
    fill_memory(d, &m->total, &reserved, &m->free, &m->used);
    m->used += reserved; /* v1 counts the driver's reservation as used */
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t d, nvmlMemory_v2_t *m) {
    ENTER_DEVICE(nvmlDeviceGetMemoryInfo_v2, d, 1);
    NEED(m);
    if (m->version != nvmlMemory_v2) RETURN(NVML_ERROR_ARGUMENT_VERSION_MISMATCH);
    REQUIRE(d, F_MEMORY_V2);
    fill_memory(d, &m->total, &m->reserved, &m->free, &m->used);
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t d, int sensor, unsigned int *temp) {
    ENTER_DEVICE(nvmlDeviceGetTemperature, d, 0);
    NEED(temp && sensor == 0);
    REQUIRE(d, F_TEMPERATURE);
    *temp = temperature(d);
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetTemperatureV(nvmlDevice_t d, nvmlTemperature_v1_t *t) {
    ENTER_DEVICE(nvmlDeviceGetTemperatureV, d, 0);
    NEED(t);
    if (t->version != nvmlTemperature_v1) RETURN(NVML_ERROR_ARGUMENT_VERSION_MISMATCH);
    NEED(t->sensorType == 0);
    REQUIRE(d, F_TEMPERATURE);
    t->temperature = (int)temperature(d);
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t d, unsigned int *mw) {
    ENTER_DEVICE(nvmlDeviceGetPowerUsage, d, 0);
    NEED(mw);
    REQUIRE(d, F_POWER);
    *mw = power_mw(d);
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t d, unsigned int *mw) {
    ENTER_DEVICE(nvmlDeviceGetEnforcedPowerLimit, d, 0);
    NEED(mw);
    REQUIRE(d, F_POWER_LIMIT);
    *mw = 700000;
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetPowerManagementLimit(nvmlDevice_t d, unsigned int *mw) {
    ENTER_DEVICE(nvmlDeviceGetPowerManagementLimit, d, 0);
    NEED(mw);
    REQUIRE(d, F_POWER_LIMIT);
    *mw = 700000;
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t d, unsigned long long *mj) {
    ENTER_DEVICE(nvmlDeviceGetTotalEnergyConsumption, d, 0);
    NEED(mj);
    REQUIRE(d, F_ENERGY);
    *mj = 1000000ull * (unsigned long long)(d->index + 1) + (unsigned long long)(t_s() * 400000.0);
    RETURN(NVML_SUCCESS);
}

static const unsigned int MAX_CLOCK[4] = {1980, 1980, 2619, 1755}; /* graphics, sm, mem, video */

nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t d, int type, unsigned int *mhz) {
    ENTER_DEVICE(nvmlDeviceGetClockInfo, d, 0);
    NEED(mhz && type >= 0 && type < 4);
    REQUIRE(d, F_CLOCKS);
    if (type == 3) REQUIRE(d, F_VIDEO_CLOCK);
    unsigned int busy = utilization(d) >= 5;
    *mhz = type == 2 ? MAX_CLOCK[2] : busy ? MAX_CLOCK[type] - 15u * (unsigned int)d->index : 345;
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetMaxClockInfo(nvmlDevice_t d, int type, unsigned int *mhz) {
    ENTER_DEVICE(nvmlDeviceGetMaxClockInfo, d, 0);
    NEED(mhz && type >= 0 && type < 4);
    REQUIRE(d, F_CLOCKS);
    if (type == 3) REQUIRE(d, F_VIDEO_CLOCK);
    *mhz = MAX_CLOCK[type];
    RETURN(NVML_SUCCESS);
}

static unsigned long long clock_reasons(nvmlDevice_t d) {
    if (d->reasons >= 0) return (unsigned long long)d->reasons;
    return utilization(d) < 5 ? 0x1ull : 0x0ull;
}

nvmlReturn_t nvmlDeviceGetCurrentClocksEventReasons(nvmlDevice_t d, unsigned long long *r) {
    ENTER_DEVICE(nvmlDeviceGetCurrentClocksEventReasons, d, 0);
    NEED(r);
    REQUIRE(d, F_CLOCK_REASONS);
    *r = clock_reasons(d);
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetCurrentClocksThrottleReasons(nvmlDevice_t d, unsigned long long *r) {
    ENTER_DEVICE(nvmlDeviceGetCurrentClocksThrottleReasons, d, 0);
    NEED(r);
    REQUIRE(d, F_CLOCK_REASONS);
    *r = clock_reasons(d);
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetFanSpeed(nvmlDevice_t d, unsigned int *speed) {
    ENTER_DEVICE(nvmlDeviceGetFanSpeed, d, 0);
    (void)speed;
    RETURN(NVML_ERROR_NOT_SUPPORTED); /* an SXM board has no fan of its own */
}

nvmlReturn_t nvmlDeviceGetEncoderUtilization(nvmlDevice_t d, unsigned int *u, unsigned int *p) {
    ENTER_DEVICE(nvmlDeviceGetEncoderUtilization, d, 0);
    NEED(u && p);
    *u = 0, *p = 167000;
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetDecoderUtilization(nvmlDevice_t d, unsigned int *u, unsigned int *p) {
    ENTER_DEVICE(nvmlDeviceGetDecoderUtilization, d, 0);
    NEED(u && p);
    *u = 0, *p = 167000;
    RETURN(NVML_SUCCESS);
}

/* ---- PCIe and NVLink ------------------------------------------------------------------------ */

nvmlReturn_t nvmlDeviceGetPcieReplayCounter(nvmlDevice_t d, unsigned int *value) {
    ENTER_DEVICE(nvmlDeviceGetPcieReplayCounter, d, 0);
    NEED(value);
    REQUIRE(d, F_PCIE_REPLAY);
    *value = (unsigned int)d->pcie_replays;
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetPcieThroughput(nvmlDevice_t d, int counter, unsigned int *kib_s) {
    ENTER_DEVICE(nvmlDeviceGetPcieThroughput, d, 0);
    NEED(kib_s && (counter == 0 || counter == 1));
    long us = g_pcie_us;
    pthread_mutex_unlock(&g_lock);
    if (us > 0) usleep((useconds_t)us); /* the driver samples a byte counter over ~20 ms */
    pthread_mutex_lock(&g_lock);
    *kib_s = 1000u * utilization(d) + (unsigned int)counter;
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetNvLinkState(nvmlDevice_t d, unsigned int link, int *active) {
    ENTER_DEVICE(nvmlDeviceGetNvLinkState, d, 0);
    NEED(active);
    REQUIRE(d, F_NVLINK);
    if (link >= (unsigned int)g_links) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    *active = link_up(d, (int)link);
    RETURN(NVML_SUCCESS);
}

static void field_value(nvmlDevice_t d, nvmlFieldValue_t *v, long long stamp) {
    v->timestamp = stamp;
    v->latencyUsec = 0;
    v->nvmlReturn = NVML_SUCCESS;
    v->valueType = VT_ULL;
    v->value.ullVal = 0;
    if (d->kind == KIND_MIG) {
        v->nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
        return;
    }
    switch (v->fieldId) {
    case FI_MEMORY_TEMP:
        if (UNSUPPORTED(d, F_MEMORY_TEMPERATURE)) break;
        v->valueType = VT_UINT;
        v->value.uiVal = temperature(d) + 6;
        return;
    case FI_ECC_SBE_VOL_TOTAL:
    case FI_ECC_DBE_VOL_TOTAL:
        if (UNSUPPORTED(d, F_ECC)) break;
        v->value.ullVal = d->ecc[v->fieldId == FI_ECC_DBE_VOL_TOTAL];
        return;
    case FI_NVLINK_CRC_FLIT_TOTAL:
    case FI_NVLINK_CRC_DATA_TOTAL:
    case FI_NVLINK_REPLAY_TOTAL:
    case FI_NVLINK_RECOVERY_TOTAL:
        if (UNSUPPORTED(d, F_NVLINK) || UNSUPPORTED(d, F_NVLINK_ERRORS)) break;
        v->value.ullVal = d->nvlink_errors[(v->fieldId - FI_NVLINK_CRC_FLIT_TOTAL) / 7];
        return;
    case FI_NVLINK_LINK_COUNT:
        if (UNSUPPORTED(d, F_NVLINK)) break;
        v->valueType = VT_UINT;
        v->value.uiVal = (unsigned int)g_links;
        return;
    case FI_NVLINK_TX_DATA:
    case FI_NVLINK_RX_DATA:
        if (UNSUPPORTED(d, F_NVLINK)) break;
        if (v->scopeId >= (unsigned int)g_links) {
            v->nvmlReturn = NVML_ERROR_INVALID_ARGUMENT;
            return;
        }
        v->value.ullVal = link_counter(d, (int)v->scopeId, v->fieldId == FI_NVLINK_RX_DATA);
        return;
    case FI_NVLINK_GET_STATE: /* older drivers: NotSupported, one nvmlDeviceGetNvLinkState each */
        if (UNSUPPORTED(d, F_NVLINK) || UNSUPPORTED(d, F_NVLINK_STATE_FIELD)) break;
        if (v->scopeId >= (unsigned int)g_links) {
            v->nvmlReturn = NVML_ERROR_INVALID_ARGUMENT;
            return;
        }
        v->valueType = VT_UINT;
        v->value.uiVal = (unsigned int)link_up(d, (int)v->scopeId); /* 0 inactive, 1 active */
        return;
    case FI_GPU_RECOVERY_ACTION: /* drivers before R565 answer NotSupported */
        if (d->recovery_action < 0) break;
        v->valueType = VT_UINT;
        v->value.uiVal = (unsigned int)d->recovery_action;
        return;
    }
    v->nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
}

nvmlReturn_t nvmlDeviceGetFieldValues(nvmlDevice_t d, int count, nvmlFieldValue_t *values) {
    ENTER_DEVICE(nvmlDeviceGetFieldValues, d, 1);
    NEED(values && count > 0);
    REQUIRE(d, F_FIELD_VALUES); /* a driver older than the field API */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long stamp = ts.tv_sec * 1000000ll + ts.tv_nsec / 1000;
    for (int i = 0; i < count; i++) field_value(d, &values[i], stamp);
    RETURN(NVML_SUCCESS);
}

/* ---- ECC and row remapping -------------------------------------------------------------------- */

nvmlReturn_t nvmlDeviceGetTotalEccErrors(nvmlDevice_t d, int type, int counter,
                                         unsigned long long *count) {
    ENTER_DEVICE(nvmlDeviceGetTotalEccErrors, d, 0);
    NEED(count && (type == 0 || type == 1) && (counter == 0 || counter == 1));
    REQUIRE(d, F_ECC);
    *count = d->ecc[type];
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetRemappedRows(nvmlDevice_t d, unsigned int *cor, unsigned int *unc,
                                       unsigned int *pending, unsigned int *failure) {
    ENTER_DEVICE(nvmlDeviceGetRemappedRows, d, 0);
    NEED(cor && unc && pending && failure);
    REQUIRE(d, F_REMAPPED_ROWS);
    *cor = d->remap[0], *unc = d->remap[1], *pending = d->remap[2], *failure = d->remap[3];
    RETURN(NVML_SUCCESS);
}

/* ---- MIG -------------------------------------------------------------------------------------- */

nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t d, unsigned int *current, unsigned int *pending) {
    ENTER_DEVICE(nvmlDeviceGetMigMode, d, 0);
    NEED(current && pending);
    REQUIRE(d, F_MIG);
    *current = *pending = (unsigned int)d->mig_mode;
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t d, unsigned int *count) {
    ENTER_DEVICE(nvmlDeviceGetMaxMigDeviceCount, d, 0);
    NEED(count);
    REQUIRE(d, F_MIG);
    *count = MAX_MIG;
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t d, unsigned int index,
                                                 nvmlDevice_t *mig) {
    ENTER_DEVICE(nvmlDeviceGetMigDeviceHandleByIndex, d, 0);
    NEED(mig);
    REQUIRE(d, F_MIG);
    if (!d->mig_mode) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    if (index >= MAX_MIG) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    if (index >= (unsigned int)d->mig_count) RETURN(NVML_ERROR_NOT_FOUND);
    *mig = &g_mig[d->index][index];
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceIsMigDeviceHandle(nvmlDevice_t d, unsigned int *is_mig) {
    ENTER_DEVICE(nvmlDeviceIsMigDeviceHandle, d, 1);
    NEED(is_mig);
    *is_mig = d->kind == KIND_MIG;
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetDeviceHandleFromMigDeviceHandle(nvmlDevice_t d, nvmlDevice_t *parent) {
    ENTER_DEVICE(nvmlDeviceGetDeviceHandleFromMigDeviceHandle, d, 1);
    NEED(parent && d->kind == KIND_MIG);
    *parent = d->parent;
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetGpuInstanceId(nvmlDevice_t d, unsigned int *id) {
    ENTER_DEVICE(nvmlDeviceGetGpuInstanceId, d, 1);
    NEED(id);
    if (d->kind != KIND_MIG) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    *id = d->gi;
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetComputeInstanceId(nvmlDevice_t d, unsigned int *id) {
    ENTER_DEVICE(nvmlDeviceGetComputeInstanceId, d, 1);
    NEED(id);
    if (d->kind != KIND_MIG) RETURN(NVML_ERROR_INVALID_ARGUMENT);
    *id = d->ci;
    RETURN(NVML_SUCCESS);
}

/* ---- Processes -------------------------------------------------------------------------------- */

static nvmlReturn_t processes(nvmlDevice_t d, unsigned int *count, nvmlProcessInfo_t *infos,
                              int graphics) {
    NEED(count);
    REQUIRE(d, F_PROCESSES);
    int n = graphics ? 0 : d->nprocs;
    if (*count < (unsigned int)n || (!infos && n)) {
        *count = (unsigned int)n;
        RETURN(NVML_ERROR_INSUFFICIENT_SIZE);
    }
    for (int p = 0; p < n; p++) {
        infos[p].pid = d->procs[p].pid;
        infos[p].usedGpuMemory = d->procs[p].used;
        infos[p].gpuInstanceId = d->procs[p].gi;
        infos[p].computeInstanceId = d->procs[p].ci;
    }
    *count = (unsigned int)n;
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t d, unsigned int *count,
                                                     nvmlProcessInfo_t *infos) {
    ENTER_DEVICE(nvmlDeviceGetComputeRunningProcesses_v3, d, 0);
    return processes(d, count, infos, 0);
}

nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses_v3(nvmlDevice_t d, unsigned int *count,
                                                      nvmlProcessInfo_t *infos) {
    ENTER_DEVICE(nvmlDeviceGetGraphicsRunningProcesses_v3, d, 0);
    return processes(d, count, infos, 1);
}

nvmlReturn_t nvmlDeviceGetMPSComputeRunningProcesses_v3(nvmlDevice_t d, unsigned int *count,
                                                        nvmlProcessInfo_t *infos) {
    ENTER_DEVICE(nvmlDeviceGetMPSComputeRunningProcesses_v3, d, 0);
    return processes(d, count, infos, 1);
}

/* ---- Events ------------------------------------------------------------------------------------ */

nvmlReturn_t nvmlEventSetCreate(nvmlEventSet_t *set) {
    ENTER(nvmlEventSetCreate);
    if (!g_refcount) RETURN(NVML_ERROR_UNINITIALIZED);
    NEED(set);
    for (int s = 0; s < MAX_SETS; s++)
        if (!g_sets[s].used || g_sets[s].freed) {
            memset(&g_sets[s], 0, sizeof g_sets[s]);
            g_sets[s].used = 1;
            *set = &g_sets[s];
            RETURN(NVML_SUCCESS);
        }
    RETURN(NVML_ERROR_UNKNOWN);
}

nvmlReturn_t nvmlDeviceGetSupportedEventTypes(nvmlDevice_t d, unsigned long long *types) {
    ENTER_DEVICE(nvmlDeviceGetSupportedEventTypes, d, 0);
    NEED(types);
    *types = UNSUPPORTED(d, F_EVENTS) ? 0 : EVENT_XID;
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlDeviceRegisterEvents(nvmlDevice_t d, unsigned long long types,
                                      nvmlEventSet_t set) {
    ENTER_DEVICE(nvmlDeviceRegisterEvents, d, 0);
    NEED(set && set->used && !set->freed);
    REQUIRE(d, F_EVENTS);
    if (types & ~EVENT_XID) RETURN(NVML_ERROR_NOT_SUPPORTED);
    set->mask[d->index] |= types;
    RETURN(NVML_SUCCESS);
}

static nvmlReturn_t wait_event(nvmlEventSet_t set, nvmlEventData_t *data, unsigned int timeout_ms,
                               int v2) {
    NEED(set && data);
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    double end = deadline.tv_sec + deadline.tv_nsec / 1e9 + timeout_ms / 1000.0;
    while (set->head == set->tail) {
        if (!g_refcount || set->freed || !set->used) RETURN(NVML_ERROR_UNINITIALIZED);
        double now = now_s();
        if (now >= end) RETURN(NVML_ERROR_TIMEOUT);
        double until = now + 0.05 < end ? now + 0.05 : end; /* wake to read the control file */
        struct timespec ts = {(time_t)until, (long)((until - (time_t)until) * 1e9)};
        pthread_cond_timedwait(&g_cond, &g_lock, &ts);
        poll_control();
    }
    int gpu = set->queue[set->head % QUEUE].gpu;
    unsigned long long xid = set->queue[set->head % QUEUE].xid;
    set->head++;
    data->device = &g_gpu[gpu];
    data->eventType = EVENT_XID;
    data->eventData = xid;
    if (v2) data->gpuInstanceId = data->computeInstanceId = UINT_NA;
    RETURN(NVML_SUCCESS);
}

nvmlReturn_t nvmlEventSetWait_v2(nvmlEventSet_t set, nvmlEventData_t *data, unsigned int ms) {
    ENTER(nvmlEventSetWait_v2);
    return wait_event(set, data, ms, 1);
}

nvmlReturn_t nvmlEventSetWait(nvmlEventSet_t set, nvmlEventData_t *data, unsigned int ms) {
    ENTER(nvmlEventSetWait);
    return wait_event(set, data, ms, 0);
}

nvmlReturn_t nvmlEventSetFree(nvmlEventSet_t set) {
    ENTER(nvmlEventSetFree);
    NEED(set && set->used);
    set->freed = 1;
    pthread_cond_broadcast(&g_cond);
    RETURN(NVML_SUCCESS);
}
