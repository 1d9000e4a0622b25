/* Which kernels this CPU can run, and the one chosen once per process (or forced through the
 * STORE_NATIVE_ISA environment variable for tests and benchmarks). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const char *const isa_names[STORE_ISA_COUNT] = {"ref", "avx2", "avx512", "gfni",
                                                         "avx2gfni"};

const char *store_isa_name(int isa) {
    return (isa >= 0 && isa < STORE_ISA_COUNT) ? isa_names[isa] : NULL;
}

int store_isa_supported(int isa) {
    __builtin_cpu_init();
    switch (isa) {
    case STORE_ISA_REF: return 1;
    case STORE_ISA_AVX2: return __builtin_cpu_supports("avx2");
    case STORE_ISA_AVX512:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("bmi2");
    case STORE_ISA_GFNI:
        return store_isa_supported(STORE_ISA_AVX512) && __builtin_cpu_supports("gfni");
    case STORE_ISA_AVX2_GFNI:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("gfni");
    default: return 0;
    }
}

/* Best first (bench/ec.py). A CPU with both avx2gfni and avx512 also has what gfni needs, so
 * the order between those two only matters when STORE_NATIVE_ISA rules gfni out. */
static const int isa_preference[] = {STORE_ISA_GFNI, STORE_ISA_AVX2_GFNI, STORE_ISA_AVX512,
                                     STORE_ISA_AVX2, STORE_ISA_REF};

static int default_isa = -1;
static pthread_once_t isa_once = PTHREAD_ONCE_INIT;

static void choose_isa(void) {
    const char *forced = getenv("STORE_NATIVE_ISA");
    if (forced && *forced) {
        default_isa = -1;
        for (int i = 0; i < STORE_ISA_COUNT; i++)
            if (strcmp(forced, isa_names[i]) == 0 && store_isa_supported(i)) default_isa = i;
        return;
    }
    for (size_t i = 0; i < sizeof isa_preference / sizeof isa_preference[0]; i++) {
        if (store_isa_supported(isa_preference[i])) {
            default_isa = isa_preference[i];
            return;
        }
    }
}

int store_isa_default(void) {
    pthread_once(&isa_once, choose_isa);
    return default_isa;
}
