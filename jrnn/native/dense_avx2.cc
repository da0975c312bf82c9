// The AVX2 + FMA build of dense.cc: its *_avx2 handlers (see "instruction sets" in common.h).
#define JRNN_AVX2 1
#include "dense.cc"
