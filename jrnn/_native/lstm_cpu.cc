// jrnn native CPU LSTM (XLA FFI custom calls).
//
//   jrnn_lstm_fwd: for t in 0..T-1:  z = x[:, t] W + b + h R;  i,f,g,o = σ,σ,tanh,σ(z)
//                  c = f c + i g;  h = o tanh(c);  y[:, t] = h
//   jrnn_lstm_bwd: the reverse recurrence: dz[:, t] from dy, the saved gates and c, and
//                  dh_t = dy[:, t] + dz[:, t+1] Rᵀ.
// The weight and input gradients (Xᵀ dz, dz Wᵀ, Hᵀ dz, Σ dz) are large GEMMs left to XLA.
//
// One register tile computes, for up to 6 batch rows, the four gate blocks of 16 units
// (64 columns of the packed W and R) and applies the gate math in registers: neither
// x W nor z ever reaches memory, so the forward pass allocates only what it returns
// (XLA's CPU runtime maps every large temporary afresh on each call, and the page faults
// cost as much as the arithmetic). Work is split over XLA's intra-op thread pool, one
// step at a time (see Recur). AVX-512 only; elsewhere jrnn_native_supported() returns 0
// and jrnn runs its XLA scan.
//
// Layouts (row-major float32; B batch, T time, F features, H units, 4H gate columns in
// Keras' i, f, c, o order):
//   x (B, T, F)   bias (4H)   y, cseq (B, T, H)   gates (B, T, 4H) post-activation
//   wpack (ceil(H/16), F, 64)   [k][q*16+j] = W[k, q*H + 16p + j]   (zero past H)
//   rpack (ceil(H/16), H, 64)   [k][q*16+j] = R[k, q*H + 16p + j]
//   rtpack (ceil(H/64), 4H, 64) [k][j]      = R[64p + j, k]
//   h0, c0, hT, cT, dc0 (B, H)   dz (B, T, 4H)

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "xla/ffi/api/ffi.h"

#if defined(__x86_64__) || defined(_M_X64)
#define JRNN_X86 1
#include <immintrin.h>
#endif

namespace ffi = xla::ffi;

extern "C" int jrnn_native_supported() {
#if defined(JRNN_X86)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
#else
  return 0;
#endif
}

#if defined(JRNN_X86)
namespace {

// ------------------------------------------------------------------ vector math
#define JRNN_TARGET __attribute__((target("avx512f,avx512dq,fma")))

JRNN_TARGET inline __m512 Exp(__m512 x) {  // Cephes expf, ~1 ulp
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3365447f)), _mm512_set1_ps(88.3762626f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

JRNN_TARGET inline __m512 Sigmoid(__m512 x) {
  const __m512 one = _mm512_set1_ps(1.0f);
  return _mm512_div_ps(one, _mm512_add_ps(one, Exp(_mm512_sub_ps(_mm512_setzero_ps(), x))));
}

JRNN_TARGET inline __m512 Tanh(__m512 x) {  // Cephes tanhf: odd polynomial below 0.625
  const __m512 ax = _mm512_abs_ps(x);
  const __m512 z = _mm512_mul_ps(x, x);
  __m512 p = _mm512_set1_ps(-5.70498872745e-3f);
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(2.06390887954e-2f));
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-5.37397155531e-2f));
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(1.33314422036e-1f));
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-3.33332819422e-1f));
  const __m512 small = _mm512_fmadd_ps(_mm512_mul_ps(p, z), x, x);
  const __m512 one = _mm512_set1_ps(1.0f);
  const __m512 e = Exp(_mm512_add_ps(ax, ax));
  __m512 big = _mm512_sub_ps(one, _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(e, one)));
  big = _mm512_or_ps(big, _mm512_and_ps(x, _mm512_set1_ps(-0.0f)));  // copy the sign
  const __mmask16 is_small = _mm512_cmp_ps_mask(ax, _mm512_set1_ps(0.625f), _CMP_LT_OQ);
  return _mm512_mask_blend_ps(is_small, big, small);
}

JRNN_TARGET inline __m512 Load(__mmask16 m, const float* p) { return _mm512_maskz_loadu_ps(m, p); }
JRNN_TARGET inline void Store(__mmask16 m, float* p, __m512 v) { _mm512_mask_storeu_ps(p, m, v); }

inline __mmask16 TailMask(int remaining) {
  return remaining >= 16 ? static_cast<__mmask16>(0xFFFF)
                         : static_cast<__mmask16>((1u << std::max(remaining, 0)) - 1u);
}

constexpr int kMaxRows = 6;  // rows per register tile (6 x 4 zmm accumulators)

struct Dims {
  int64_t B, T, H;
};

// acc[r][0..3] += sum_k a[r * lda + k] * w[k * 64 .. k * 64 + 63], k < K.
template <int MR>
JRNN_TARGET inline void Accumulate(__m512 (&acc)[MR][4], const float* a, int64_t lda,
                                   const float* w, int64_t K) {
  for (int64_t k = 0; k < K; ++k, w += 64) {
    const __m512 w0 = _mm512_loadu_ps(w), w1 = _mm512_loadu_ps(w + 16);
    const __m512 w2 = _mm512_loadu_ps(w + 32), w3 = _mm512_loadu_ps(w + 48);
    for (int r = 0; r < MR; ++r) {
      const __m512 v = _mm512_set1_ps(a[r * lda + k]);
      acc[r][0] = _mm512_fmadd_ps(v, w0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(v, w1, acc[r][1]);
      acc[r][2] = _mm512_fmadd_ps(v, w2, acc[r][2]);
      acc[r][3] = _mm512_fmadd_ps(v, w3, acc[r][3]);
    }
  }
}

// ------------------------------------------------------------------ forward
struct FwdArgs {
  Dims d;
  int64_t F;
  const float *x, *wpack, *bias, *rpack, *h0, *c0;
  float *y, *hT, *cT, *gates, *cseq;  // gates/cseq null unless saving for the backward pass
};

template <int MR>
JRNN_TARGET void FwdTile(const FwdArgs& a, int64_t t, int64_t b0, int64_t p) {
  const int64_t T = a.d.T, H = a.d.H, G = 4 * H, F = a.F;
  const int64_t u0 = 16 * p;
  const __mmask16 m = TailMask(static_cast<int>(H - u0));
  __m512 acc[MR][4];
  for (int q = 0; q < 4; ++q) {
    const __m512 bq = Load(m, a.bias + q * H + u0);
    for (int r = 0; r < MR; ++r) acc[r][q] = bq;
  }
  // z = x_t W + b + h_{t-1} R, both products on the packed panel p.
  Accumulate<MR>(acc, a.x + (b0 * T + t) * F, T * F, a.wpack + p * F * 64, F);
  if (t == 0) {
    Accumulate<MR>(acc, a.h0 + b0 * H, H, a.rpack + p * H * 64, H);
  } else {
    Accumulate<MR>(acc, a.y + (b0 * T + t - 1) * H, T * H, a.rpack + p * H * 64, H);
  }
  const float* c_in = t == 0 ? a.c0 : a.cT;  // cT holds the running c
  for (int r = 0; r < MR; ++r) {
    const int64_t b = b0 + r;
    const __m512 i = Sigmoid(acc[r][0]), f = Sigmoid(acc[r][1]);
    const __m512 g = Tanh(acc[r][2]), o = Sigmoid(acc[r][3]);
    const __m512 c = _mm512_fmadd_ps(f, Load(m, c_in + b * H + u0), _mm512_mul_ps(i, g));
    const __m512 h = _mm512_mul_ps(o, Tanh(c));
    Store(m, a.cT + b * H + u0, c);
    Store(m, a.y + (b * T + t) * H + u0, h);
    if (t == T - 1) Store(m, a.hT + b * H + u0, h);
    if (a.gates != nullptr) {
      float* gs = a.gates + (b * T + t) * G + u0;
      Store(m, gs, i);
      Store(m, gs + H, f);
      Store(m, gs + 2 * H, g);
      Store(m, gs + 3 * H, o);
      Store(m, a.cseq + (b * T + t) * H + u0, c);
    }
  }
}

// Runs tile(t, b0, panel, rows) over every row block and unit panel of every step, in
// time order (or reversed), on the calling thread and helpers scheduled on XLA's
// intra-op thread pool (so no thread outside XLA's pool competes for the cores).
//
// Work is cut into chunks claimed from one counter. The caller can finish every chunk
// alone, so a helper that never gets a thread (the pool busy with another custom call,
// e.g. the other direction of a Bidirectional layer) only means less parallelism, never
// a deadlock. Two ways to cut:
//   * by batch rows, when there are enough: rows never interact, so each chunk runs all
//     T steps for its rows with no synchronisation at all, and threads write disjoint
//     memory (no contention on first-touch page faults of the fresh result buffers);
//   * by unit panels within each step (small batches): chunk k of step s starts once
//     every chunk of the steps before it is done.
template <typename TileFn>
void Recur(ffi::ThreadPool& pool, int64_t B, int64_t T, int64_t panels, int64_t fmas_per_step,
           bool reverse, const TileFn& tile) {
  const int64_t row_blocks = (B + kMaxRows - 1) / kMaxRows;
  const int64_t items = row_blocks * panels;
  int64_t threads = std::max<int64_t>(1, pool.num_threads());
  if (const char* env = std::getenv("JRNN_NATIVE_THREADS")) threads = std::atoi(env);
  const bool by_rows = row_blocks >= threads;
  // Per-step hand-offs between cores cost ~1 us: below ~64k FMAs per step one thread wins.
  if (!by_rows && fmas_per_step < (1 << 16)) threads = 1;
  threads = std::max<int64_t>(1, std::min(threads, items));
  const int64_t chunks = by_rows ? std::min(row_blocks, 2 * threads)
                                 : (threads == 1 ? 1 : std::min<int64_t>(items, 4 * threads));
  const int64_t total = by_rows ? chunks : T * chunks;

  // Rows [lo, hi) in balanced blocks of at most kMaxRows, every panel, step t. Panel-outer:
  // one weight panel stays in L2 while every row block of the chunk uses it.
  auto rows_step = [&tile, panels](int64_t t, int64_t lo, int64_t hi) {
    const int64_t n = hi - lo, blocks = (n + kMaxRows - 1) / kMaxRows;
    for (int64_t p = 0; p < panels; ++p) {
      for (int64_t j = 0; j < blocks; ++j) {
        const int64_t b0 = lo + n * j / blocks, b1 = lo + n * (j + 1) / blocks;
        tile(t, b0, p, static_cast<int>(b1 - b0));
      }
    }
  };
  struct Shared {
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
  };
  auto shared = std::make_shared<Shared>();
  // `tile` is only touched for claimed chunks (index < total), all of which finish before
  // this function returns; a late helper only sees next >= total and leaves.
  auto work = [shared, total, chunks, items, row_blocks, B, T, reverse, by_rows, &tile,
               rows_step] {
    for (;;) {
      const int64_t g = shared->next.fetch_add(1, std::memory_order_acq_rel);
      if (g >= total) return;
      if (by_rows) {
        const int64_t lo = B * g / chunks, hi = B * (g + 1) / chunks;
        for (int64_t s = 0; s < T; ++s) rows_step(reverse ? T - 1 - s : s, lo, hi);
      } else {
        const int64_t s = g / chunks, c = g % chunks;
        while (shared->done.load(std::memory_order_acquire) < s * chunks) _mm_pause();
        const int64_t t = reverse ? T - 1 - s : s;
        for (int64_t it = items * c / chunks, hi = items * (c + 1) / chunks; it < hi; ++it) {
          const int64_t p = it / row_blocks, b0 = (it % row_blocks) * kMaxRows;
          tile(t, b0, p, static_cast<int>(std::min<int64_t>(kMaxRows, B - b0)));
        }
      }
      shared->done.fetch_add(1, std::memory_order_acq_rel);
    }
  };
  for (int64_t i = 1; i < threads; ++i) {
    auto helper = work;  // Schedule takes its task by value
    pool.Schedule(std::move(helper));
  }
  work();
  while (shared->done.load(std::memory_order_acquire) < total) _mm_pause();
}

void Forward(ffi::ThreadPool& pool, const FwdArgs& a) {
  const int64_t panels = (a.d.H + 15) / 16;
  Recur(pool, a.d.B, a.d.T, panels, a.d.B * (a.F + a.d.H) * 4 * a.d.H, false, [&](int64_t t, int64_t b0, int64_t p, int rows) {
    switch (rows) {
      case 6: FwdTile<6>(a, t, b0, p); break;
      case 5: FwdTile<5>(a, t, b0, p); break;
      case 4: FwdTile<4>(a, t, b0, p); break;
      case 3: FwdTile<3>(a, t, b0, p); break;
      case 2: FwdTile<2>(a, t, b0, p); break;
      default: FwdTile<1>(a, t, b0, p); break;
    }
  });
}

// ------------------------------------------------------------------ backward
struct BwdArgs {
  Dims d;
  const float *rtpack, *gates, *cseq, *c0, *dy, *dhT, *dcT;
  float *dz, *dc0;  // dc0 also carries dc between steps
};

template <int MR>
JRNN_TARGET void BwdTile(const BwdArgs& a, int64_t t, int64_t b0, int64_t p) {
  const int64_t T = a.d.T, H = a.d.H, G = 4 * H;
  const int64_t u0 = 64 * p;
  __mmask16 m[4];
  for (int q = 0; q < 4; ++q) m[q] = TailMask(static_cast<int>(H - u0 - 16 * q));
  __m512 acc[MR][4];
  for (int r = 0; r < MR; ++r) {
    const int64_t b = b0 + r;
    const float* dy = a.dy + (b * T + t) * H + u0;
    for (int q = 0; q < 4; ++q) {
      acc[r][q] = Load(m[q], dy + 16 * q);
      if (t == T - 1) acc[r][q] = _mm512_add_ps(acc[r][q], Load(m[q], a.dhT + b * H + u0 + 16 * q));
    }
  }
  if (t < T - 1) {  // dh_t += dz_{t+1} Rᵀ
    Accumulate<MR>(acc, a.dz + (b0 * T + t + 1) * G, T * G, a.rtpack + p * G * 64, G);
  }
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int r = 0; r < MR; ++r) {
    const int64_t b = b0 + r;
    for (int q = 0; q < 4; ++q) {
      const __mmask16 mq = m[q];
      if (mq == 0) continue;
      const int64_t u = u0 + 16 * q;
      const float* gs = a.gates + (b * T + t) * G + u;
      const __m512 i = Load(mq, gs), f = Load(mq, gs + H), g = Load(mq, gs + 2 * H);
      const __m512 o = Load(mq, gs + 3 * H);
      const __m512 c = Load(mq, a.cseq + (b * T + t) * H + u);
      const __m512 c_prev =
          t == 0 ? Load(mq, a.c0 + b * H + u) : Load(mq, a.cseq + (b * T + t - 1) * H + u);
      const __m512 dc_next = Load(mq, (t == T - 1 ? a.dcT : a.dc0) + b * H + u);
      const __m512 dh = acc[r][q];
      const __m512 tc = Tanh(c);
      const __m512 dout = _mm512_mul_ps(dh, tc);
      const __m512 dc = _mm512_fmadd_ps(_mm512_mul_ps(dh, o), _mm512_fnmadd_ps(tc, tc, one), dc_next);
      float* dz = a.dz + (b * T + t) * G + u;
      // dz_i = dc g i (1 - i); dz_f = dc c_prev f (1 - f); dz_g = dc i (1 - g²); dz_o = dout o (1 - o)
      Store(mq, dz, _mm512_mul_ps(_mm512_mul_ps(dc, g), _mm512_mul_ps(i, _mm512_sub_ps(one, i))));
      Store(mq, dz + H,
            _mm512_mul_ps(_mm512_mul_ps(dc, c_prev), _mm512_mul_ps(f, _mm512_sub_ps(one, f))));
      Store(mq, dz + 2 * H, _mm512_mul_ps(_mm512_mul_ps(dc, i), _mm512_fnmadd_ps(g, g, one)));
      Store(mq, dz + 3 * H,
            _mm512_mul_ps(dout, _mm512_mul_ps(o, _mm512_sub_ps(one, o))));
      Store(mq, a.dc0 + b * H + u, _mm512_mul_ps(dc, f));
    }
  }
}

void Backward(ffi::ThreadPool& pool, const BwdArgs& a) {
  const int64_t panels = (a.d.H + 63) / 64;
  Recur(pool, a.d.B, a.d.T, panels, a.d.B * a.d.H * 4 * a.d.H, true, [&](int64_t t, int64_t b0, int64_t p, int rows) {
    switch (rows) {
      case 6: BwdTile<6>(a, t, b0, p); break;
      case 5: BwdTile<5>(a, t, b0, p); break;
      case 4: BwdTile<4>(a, t, b0, p); break;
      case 3: BwdTile<3>(a, t, b0, p); break;
      case 2: BwdTile<2>(a, t, b0, p); break;
      default: BwdTile<1>(a, t, b0, p); break;
    }
  });
}

}  // namespace
#endif  // JRNN_X86

// ------------------------------------------------------------------ FFI handlers
namespace {

ffi::Error CheckDims(const char* what, ffi::AnyBuffer::Dimensions dims,
                     std::initializer_list<int64_t> want) {
  if (dims.size() != want.size()) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      std::string("jrnn native LSTM: rank mismatch for ") + what);
  }
  int i = 0;
  for (int64_t w : want) {
    if (w >= 0 && dims[i] != w) {
      return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                        std::string("jrnn native LSTM: shape mismatch for ") + what);
    }
    ++i;
  }
  return ffi::Error::Success();
}

#define JRNN_CHECK(expr)            \
  do {                              \
    ffi::Error err_ = (expr);       \
    if (err_.failure()) return err_; \
  } while (0)

ffi::Error LstmFwdImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> wpack,
                       ffi::Buffer<ffi::F32> bias, ffi::Buffer<ffi::F32> rpack,
                       ffi::Buffer<ffi::F32> h0, ffi::Buffer<ffi::F32> c0,
                       ffi::ResultBuffer<ffi::F32> y, ffi::ResultBuffer<ffi::F32> hT,
                       ffi::ResultBuffer<ffi::F32> cT, ffi::ResultBuffer<ffi::F32> gates,
                       ffi::ResultBuffer<ffi::F32> cseq, ffi::ThreadPool pool) {
#if defined(JRNN_X86)
  const auto xd = x.dimensions();
  const auto hd = h0.dimensions();
  if (xd.size() != 3 || hd.size() != 2) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      "jrnn native LSTM: x must be (B, T, F) and h0 (B, H)");
  }
  const int64_t B = xd[0], T = xd[1], F = xd[2], H = hd[1];
  JRNN_CHECK(CheckDims("wpack", wpack.dimensions(), {(H + 15) / 16, F, 64}));
  JRNN_CHECK(CheckDims("bias", bias.dimensions(), {4 * H}));
  JRNN_CHECK(CheckDims("rpack", rpack.dimensions(), {(H + 15) / 16, H, 64}));
  JRNN_CHECK(CheckDims("h0", hd, {B, H}));
  JRNN_CHECK(CheckDims("c0", c0.dimensions(), {B, H}));
  JRNN_CHECK(CheckDims("y", y->dimensions(), {B, T, H}));
  const bool save = gates->element_count() != 0;
  if (save) {
    JRNN_CHECK(CheckDims("gates", gates->dimensions(), {B, T, 4 * H}));
    JRNN_CHECK(CheckDims("cseq", cseq->dimensions(), {B, T, H}));
  }
  if (B == 0 || H == 0) return ffi::Error::Success();
  if (T == 0) {
    std::copy(h0.typed_data(), h0.typed_data() + B * H, hT->typed_data());
    std::copy(c0.typed_data(), c0.typed_data() + B * H, cT->typed_data());
    return ffi::Error::Success();
  }
  FwdArgs a{{B, T, H},
            F,
            x.typed_data(),
            wpack.typed_data(),
            bias.typed_data(),
            rpack.typed_data(),
            h0.typed_data(),
            c0.typed_data(),
            y->typed_data(),
            hT->typed_data(),
            cT->typed_data(),
            save ? gates->typed_data() : nullptr,
            save ? cseq->typed_data() : nullptr};
  Forward(pool, a);
  return ffi::Error::Success();
#else
  return ffi::Error(ffi::ErrorCode::kUnimplemented, "jrnn native LSTM needs x86-64 AVX-512");
#endif
}

ffi::Error LstmBwdImpl(ffi::Buffer<ffi::F32> rtpack, ffi::Buffer<ffi::F32> gates,
                       ffi::Buffer<ffi::F32> cseq, ffi::Buffer<ffi::F32> c0,
                       ffi::Buffer<ffi::F32> dy, ffi::Buffer<ffi::F32> dhT,
                       ffi::Buffer<ffi::F32> dcT, ffi::ResultBuffer<ffi::F32> dz,
                       ffi::ResultBuffer<ffi::F32> dc0, ffi::ThreadPool pool) {
#if defined(JRNN_X86)
  const auto gd = gates.dimensions();
  if (gd.size() != 3 || gd[2] % 4 != 0) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "jrnn native LSTM: gates must be (B, T, 4H)");
  }
  const int64_t B = gd[0], T = gd[1], H = gd[2] / 4;
  JRNN_CHECK(CheckDims("rtpack", rtpack.dimensions(), {(H + 63) / 64, 4 * H, 64}));
  JRNN_CHECK(CheckDims("cseq", cseq.dimensions(), {B, T, H}));
  JRNN_CHECK(CheckDims("c0", c0.dimensions(), {B, H}));
  JRNN_CHECK(CheckDims("dy", dy.dimensions(), {B, T, H}));
  JRNN_CHECK(CheckDims("dhT", dhT.dimensions(), {B, H}));
  JRNN_CHECK(CheckDims("dcT", dcT.dimensions(), {B, H}));
  JRNN_CHECK(CheckDims("dz", dz->dimensions(), {B, T, 4 * H}));
  if (B == 0 || H == 0) return ffi::Error::Success();
  if (T == 0) {
    std::copy(dcT.typed_data(), dcT.typed_data() + B * H, dc0->typed_data());
    return ffi::Error::Success();
  }
  BwdArgs a{{B, T, H},        rtpack.typed_data(), gates.typed_data(), cseq.typed_data(),
            c0.typed_data(),  dy.typed_data(),     dhT.typed_data(),   dcT.typed_data(),
            dz->typed_data(), dc0->typed_data()};
  Backward(pool, a);
  return ffi::Error::Success();
#else
  return ffi::Error(ffi::ErrorCode::kUnimplemented, "jrnn native LSTM needs x86-64 AVX-512");
#endif
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(jrnn_lstm_fwd, LstmFwdImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ctx<ffi::ThreadPool>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(jrnn_lstm_bwd, LstmBwdImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ctx<ffi::ThreadPool>());
