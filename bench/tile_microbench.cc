// The AVX-512 register tile of jrnn's native kernels (jrnn/native/common.h, AccumulateRows)
// alone, on one thread: the numbers behind docs/performance.md's "AVX-512 on an Intel Xeon".
//
//   g++ -O3 -std=c++17 bench/tile_microbench.cc -o /tmp/tile && /tmp/tile tile 384 16 384 3 128
//
//   tile K P LDA RB KC   6 x 64 tiles (24 zmm accumulators) over P weight panels of K rows x
//                        64 columns, RB row blocks of 6 rows each (rows LDA floats apart),
//                        panel-outer as the kernels run them; four variants, alternating,
//                        15 trials each, median and best GFLOP/s: no prefetch, prefetch 8 and
//                        16 rows ahead (jrnn: 8), and K blocked in KC-row blocks (every row
//                        block reuses a block of the panel from L1) with the prefetch.
//   row K P              one-row tiles (batch 1) over P panels: 4 chains (one panel per K
//                        loop, as the kernels) against 8 (two panels per K loop).
// Needs an AVX-512 CPU. Weights of a K = 384 panel (96 KiB) live in L2; K = 128 fits L1.
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#define TARGET __attribute__((target("avx512f,fma")))

template <int PF>
TARGET __attribute__((noinline)) void Tile(const float* a, long lda, const float* w, long K,
                                           float* out) {
  __m512 acc[6][4];
  for (int r = 0; r < 6; ++r)
    for (int q = 0; q < 4; ++q) acc[r][q] = _mm512_loadu_ps(out + r * 64 + 16 * q);
  for (long k = 0; k < K; ++k, w += 64) {
    __m512 wq[4];
    for (int q = 0; q < 4; ++q) wq[q] = _mm512_loadu_ps(w + 16 * q);
    if (PF) {
      for (int q = 0; q < 4; ++q)
        _mm_prefetch(reinterpret_cast<const char*>(w + 64 * PF + 16 * q), _MM_HINT_T0);
    }
    for (int r = 0; r < 6; ++r) {
      const __m512 v = _mm512_set1_ps(a[r * lda + k]);
      for (int q = 0; q < 4; ++q) acc[r][q] = _mm512_fmadd_ps(v, wq[q], acc[r][q]);
    }
  }
  for (int r = 0; r < 6; ++r)
    for (int q = 0; q < 4; ++q) _mm512_storeu_ps(out + r * 64 + 16 * q, acc[r][q]);
}

template <int NP>
TARGET __attribute__((noinline)) void Row(const float* a, const float* w, long K, long panel,
                                          float* out) {
  __m512 acc[NP][4];
  for (int p = 0; p < NP; ++p)
    for (int q = 0; q < 4; ++q) acc[p][q] = _mm512_setzero_ps();
  for (long k = 0; k < K; ++k, w += 64) {
    const __m512 v = _mm512_set1_ps(a[k]);
    for (int p = 0; p < NP; ++p)
      for (int q = 0; q < 4; ++q)
        acc[p][q] = _mm512_fmadd_ps(v, _mm512_loadu_ps(w + p * panel + 16 * q), acc[p][q]);
  }
  for (int p = 0; p < NP; ++p)
    for (int q = 0; q < 4; ++q) _mm512_storeu_ps(out + 64 * p + 16 * q, acc[p][q]);
}

template <typename Fn>
double Rate(double flops, const Fn& fn) {
  const auto t0 = std::chrono::steady_clock::now();
  fn();
  return flops / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / 1e9;
}

void Report(const char* const* names, std::vector<double>* res, int n) {
  for (int v = 0; v < n; ++v) {
    std::sort(res[v].begin(), res[v].end());
    std::printf("%s: median %.1f best %.1f GFLOP/s\n", names[v], res[v][res[v].size() / 2],
                res[v].back());
  }
}

int main(int argc, char** argv) {
  if (!__builtin_cpu_supports("avx512f")) {
    std::fprintf(stderr, "needs AVX-512\n");
    return 1;
  }
  if (argc == 7 && std::strcmp(argv[1], "tile") == 0) {
    const long K = atol(argv[2]), P = atol(argv[3]), lda = atol(argv[4]), RB = atol(argv[5]);
    const long KC = atol(argv[6]);
    std::vector<float> w(P * K * 64, 0.001f), a(6 * RB * lda + K, 0.5f), out(384 * RB * P);
    const double flops = 2.0 * P * RB * K * 6 * 64;
    const long reps = static_cast<long>(4e8 / flops) + 1;
    using Fn = void (*)(const float*, long, const float*, long, float*);
    const Fn fns[] = {Tile<0>, Tile<8>, Tile<16>, Tile<8>};
    const char* names[] = {"no prefetch", "prefetch 8", "prefetch 16", "K blocks + prefetch 8"};
    std::vector<double> res[4];
    for (int trial = 0; trial < 15; ++trial) {
      for (int v = 0; v < 4; ++v) {
        const long kc = v == 3 ? KC : K;
        res[v].push_back(Rate(reps * flops, [&] {
          for (long it = 0; it < reps; ++it)
            for (long p = 0; p < P; ++p)
              for (long k0 = 0; k0 < K; k0 += kc)
                for (long rb = 0; rb < RB; ++rb)
                  fns[v](a.data() + rb * 6 * lda + k0, lda, w.data() + (p * K + k0) * 64,
                         std::min(kc, K - k0), out.data() + (p * RB + rb) * 384);
        }));
      }
    }
    Report(names, res, 4);
    return 0;
  }
  if (argc == 4 && std::strcmp(argv[1], "row") == 0) {
    const long K = atol(argv[2]), P = 2 * ((atol(argv[3]) + 1) / 2);
    std::vector<float> w(P * K * 64, 0.001f), a(K, 0.5f), out(64 * P);
    const double flops = 2.0 * P * K * 64;
    const long reps = static_cast<long>(4e8 / flops) + 1;
    const char* names[] = {"4 chains", "8 chains"};
    std::vector<double> res[2];
    for (int trial = 0; trial < 15; ++trial) {
      res[0].push_back(Rate(reps * flops, [&] {
        for (long it = 0; it < reps; ++it)
          for (long p = 0; p < P; ++p)
            Row<1>(a.data(), w.data() + p * K * 64, K, K * 64, out.data() + 64 * p);
      }));
      res[1].push_back(Rate(reps * flops, [&] {
        for (long it = 0; it < reps; ++it)
          for (long p = 0; p < P; p += 2)
            Row<2>(a.data(), w.data() + p * K * 64, K, K * 64, out.data() + 64 * p);
      }));
    }
    Report(names, res, 2);
    return 0;
  }
  std::fprintf(stderr, "usage: %s tile K P LDA RB KC | row K P\n", argv[0]);
  return 2;
}
