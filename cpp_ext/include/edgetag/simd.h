// EDGETAG_HOT: compile a hot loop twice on x86-64 (AVX2+FMA and baseline) and
// pick at load time, so one build is fast on new CPUs and still runs on old ones.
// EDGETAG_MULTIVERSION is 1 where it does; hand-written per-target kernels
// (target("arch=x86-64-v3") / target("default") pairs, the same dispatch) exist only then.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__) && \
    !defined(EDGETAG_NO_MULTIVERSION)
#define EDGETAG_MULTIVERSION 1
#define EDGETAG_HOT __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define EDGETAG_MULTIVERSION 0
#define EDGETAG_HOT
#endif
