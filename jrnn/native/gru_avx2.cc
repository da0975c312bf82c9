// The AVX2 + FMA build of gru.cc: its *_avx2 handlers (see "instruction sets" in common.h).
#define JRNN_AVX2 1
#include "gru.cc"
