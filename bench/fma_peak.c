// The CPU's float32 FMA peak: every thread runs independent chains of fused multiply-adds
// (16 with AVX-512, 12 with AVX2: enough to cover the FMA latency of current x86 cores,
// all in registers), so nothing but the FMA units bounds the loop; AVX-512 where the CPU
// has it (the instruction set of jrnn's native kernels), else AVX2. Built and run by
// bench/fma_peak.py:
//   cc -O3 -pthread fma_peak.c -o fma_peak  (-O3: the chains stay in registers)
//   fma_peak THREADS ITERATIONS  ->  prints "GFLOP/s seconds ISA"
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long iterations;
static volatile float sink;

static int lanes, chain_count;

__attribute__((target("avx512f"))) static void *chains512(void *unused) {
  (void)unused;
  __m512 acc[16];
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (int k = 0; k < 16; ++k) acc[k] = _mm512_set1_ps((float)k);
  for (long i = 0; i < iterations; ++i) {
    for (int k = 0; k < 16; ++k) acc[k] = _mm512_fmadd_ps(acc[k], a, b);
  }
  __m512 total = acc[0];
  for (int k = 1; k < 16; ++k) total = _mm512_add_ps(total, acc[k]);
  sink = _mm512_reduce_add_ps(total);
  return NULL;
}

__attribute__((target("avx2,fma"))) static void *chains256(void *unused) {
  (void)unused;
  __m256 acc[12];  // + a and b: 14 of the 16 ymm registers
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (int k = 0; k < 12; ++k) acc[k] = _mm256_set1_ps((float)k);
  for (long i = 0; i < iterations; ++i) {
    for (int k = 0; k < 12; ++k) acc[k] = _mm256_fmadd_ps(acc[k], a, b);
  }
  __m256 total = acc[0];
  for (int k = 1; k < 12; ++k) total = _mm256_add_ps(total, acc[k]);
  float out[8];
  _mm256_storeu_ps(out, total);
  sink = out[0] + out[7];
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: fma_peak THREADS ITERATIONS\n");
    return 2;
  }
  int threads = atoi(argv[1]);
  iterations = atol(argv[2]);
  if (threads < 1 || threads > 256 || iterations < 1) {
    fprintf(stderr, "fma_peak: THREADS must be 1..256 and ITERATIONS positive\n");
    return 2;
  }
  __builtin_cpu_init();
  void *(*chains)(void *);
  if (__builtin_cpu_supports("avx512f")) {
    chains = chains512, lanes = 16, chain_count = 16;
  } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    chains = chains256, lanes = 8, chain_count = 12;
  } else {
    fprintf(stderr, "fma_peak: this CPU has neither AVX-512 nor AVX2 with FMA\n");
    return 2;
  }
  pthread_t ids[256];
  struct timespec start, end;
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (int t = 0; t < threads; ++t) pthread_create(&ids[t], NULL, chains, NULL);
  for (int t = 0; t < threads; ++t) pthread_join(ids[t], NULL);
  clock_gettime(CLOCK_MONOTONIC, &end);
  double seconds =
      (double)(end.tv_sec - start.tv_sec) + 1e-9 * (double)(end.tv_nsec - start.tv_nsec);
  double flops = 2.0 * chain_count * lanes * (double)iterations * threads;
  printf("%.1f %.4f %s\n", flops / seconds / 1e9, seconds, lanes == 16 ? "avx512" : "avx2");
  return 0;
}
