// jrnn native CPU LSTM (XLA FFI custom calls); shared machinery in common.h.
//
//   jrnn_lstm_fwd: for t in 0..T-1:  z = x[:, t] W + b + h R;  i,f,g,o = σ,σ,tanh,σ(z)
//                  c = f c + i g;  h = o tanh(c);  y[:, t] = h
//   jrnn_lstm_bwd: the reverse recurrence: dz[:, t] from dy, the saved gates and c, and
//                  dh_t = dy[:, t] + dz[:, t+1] Rᵀ; also h_{t-1} per step (hprev).
// The weight gradients (Xᵀ dz, hprevᵀ dz, Σ dz) are dense.cc's (float32; XLA's in
// bfloat16), the input gradient dz Wᵀ is an XLA GEMM. At batch <= 2 the forward kernel
// computes b + x W for every step first (Project). In place: dz reuses the buffer of the
// gates it replaces (both dtypes) and hprev that of dy (each entry is read before it is
// overwritten), so a training step maps no (B, T, ·) buffer beyond what the forward pass
// saved and dy.
//
// The forward kernel also runs on bfloat16 x, h0, c0, weights and outputs (y, hT, cT):
// products accumulate in float32 (vdpbf16ps), the gate maths and the running c are float32,
// h is rounded to bfloat16 as it is stored (and so as the next step reads it); the bias
// and cseq stay float32, the saved gates are bfloat16. The backward kernel runs bfloat16
// too: dz (B, T, 4H) bfloat16 over the gates, dh and dc float32.
//
// Backwards in time (the handlers' `reverse` attribute): step s reads and writes time
// index T-1-s of every (B, T, .) array (Dims::Row), so a go_backwards layer needs no
// flipped copies of x or y. The forward kernel runs D directions in one call (a
// Bidirectional layer's two, each with its own weights and states): direction d runs
// backwards when reverse != (d odd) and writes columns dH..dH+H-1 of y (B, T, D H).
// Both kernels also take a `slot` (ReadSlot in common.h): y, and the backward kernel's dy,
// may hold several calls' columns side by side (a Bidirectional training step's two
// directions, one call each); the forward kernel then writes its slot of y, into y_in
// (aliased to y) when an earlier call made the array.
//
// Masks (Keras' masking; the handlers' `mask` argument, (B, T) uint8, or (0,) for none): a
// step whose entry is 0 keeps h and c, and writes the kept h to y and the kept c to cseq,
// so that y is the state sequence (the layer applies Keras' rules for masked outputs). Its
// backward step writes zero gate gradients and passes dh (through `dhc`, (B, H), which
// returns the dh that reaches h0 directly) and dc to the step before.
//
// Layouts (row-major, float32 or bfloat16 as above; B batch, T time, F features, H units,
// 4H gate columns in Keras' i, f, c, o order; the forward kernel's per-direction arrays
// have a leading D):
//   x (B, T, F)   bias (4H)   y, cseq (B, T, H)   gates (B, T, 4H) post-activation
//   (forward: y (B, T, D H); gates, cseq (D, B, T, .), or (B, T, .) when D = 1)
//   wpack (ceil(H/16), F, 64)   [k][q*16+j] = W[k, q*H + 16p + j]   (zero past H)
//   rpack (ceil(H/16), H, 64)   [k][q*16+j] = R[k, q*H + 16p + j]
//   (bfloat16: wpack (ceil(H/16), ceil(F/2), 128) [kk][2c + e] = the float32 layout's
//   [2kk + e][c], zero past F; rpack likewise)
//   rtpack (ceil(H/64), 4H, 64) [k][j]      = R[64p + j, k]
//   (the AVX2 build's float32 panels hold the same elements block by block: [k][16q + j] at
//   16 K q + 16 k + j of panel p, K its rows: PackedPanel in common.h)
//   h0, c0, hT, cT, dc0 (B, H)   dz (B, T, 4H)   hprev (B, T, H)

#include <algorithm>
#include <cstdint>
#include <vector>

#include "common.h"

#if defined(JRNN_X86)
namespace jrnn {
namespace JRNN_ISA {
namespace {

// ------------------------------------------------------------------ forward
template <typename S>
struct FwdArgs {
  Dims d;
  int64_t F;
  const S *x, *wpack;
  const float* bias;
  const S *rpack, *c0;
  HSeq<S> h;
  S *hT, *cT;
  float* c;                // the running c (B, H), float32: cT itself, or a buffer for bfloat16
  S* gates;                // null unless saving for the backward pass
  float* cseq;
  const uint8_t* mask;     // (B, T), 0: the step keeps h and c; null: none
  const float* xw = nullptr;  // b + x W of every row (B T, 64 panels) (Project), or null
};

// acc = b + x W on panel p for MR rows of x, lda apart from `rows`: the input half of a
// step's pre-activations (FwdTile), or of every step's at once (ProjectTile).
template <int MR, typename S>
JRNN_TARGET inline void InputProduct(Vec (&acc)[MR][4], const FwdArgs<S>& a, const S* rows,
                                     int64_t lda, int64_t p, PanelShare share = {}) {
  const int64_t H = a.d.H, u0 = 16 * p;
  const Mask m = TailMask(static_cast<int>(H - u0));
  for (int q = 0; q < 4; ++q) {
    const Vec bq = Load(m, a.bias + q * H + u0);
    for (int r = 0; r < MR; ++r) acc[r][q] = bq;
  }
  Accumulate<MR, 0, 4>(acc, rows, lda, PanelAhead<4>(a.wpack, p, a.F, share), a.F);
}

// Rows i0 .. i0 + MR - 1 of x (B T, F) through panel p: b + x W, into xw (rows ld apart) in
// the panel's column order. FwdTile runs the same InputProduct per step, so the results
// are bitwise those of the unhoisted tile.
template <int MR>
JRNN_TARGET void ProjectTile(const FwdArgs<float>& a, int64_t i0, int64_t p, float* xw,
                             int64_t ld) {
  Vec acc[MR][4];
  InputProduct<MR>(acc, a, a.x + i0 * a.F, a.F, p);
  for (int r = 0; r < MR; ++r) {
    for (int q = 0; q < 4; ++q) StoreU(xw + (i0 + r) * ld + 64 * p + 16 * q, acc[r][q]);
  }
}

// The gate maths of MR rows b0.. on panel p from their pre-activations acc; hprev: their
// h_{t-1}, rows ldh apart.
template <int MR, typename S>
JRNN_TARGET inline void FwdRows(const FwdArgs<S>& a, int64_t t, int64_t b0, int64_t p,
                                const Vec (&acc)[MR][4], const S* hprev, int64_t ldh) {
  const int64_t T = a.d.T, H = a.d.H, G = 4 * H;
  const int64_t u0 = 16 * p;
  const Mask m = TailMask(static_cast<int>(H - u0));
  for (int r = 0; r < MR; ++r) {
    const int64_t b = b0 + r;
    const Vec c_prev = t == 0 ? Load(m, a.c0 + b * H + u0) : Load(m, a.c + b * H + u0);
    LstmUnits u = LstmStep(acc[r], c_prev);
    if (a.d.Masked(a.mask, b, t)) {  // the state passes through (and y holds it)
      u.c = c_prev;
      u.h = Load(m, hprev + r * ldh + u0);
    }
    Store(m, a.c + b * H + u0, u.c);
    Store(m, a.h.Out(t, b) + u0, u.h);
    if (t == T - 1) {
      Store(m, a.hT + b * H + u0, u.h);
      if constexpr (!kIsF32<S>) Store(m, a.cT + b * H + u0, u.c);
    }
    if (a.gates != nullptr) {
      SaveLstmStep(m, u, a.gates + a.d.Row(b, t) * G + u0, H, a.cseq + a.d.Row(b, t) * H + u0);
    }
  }
}

template <int MR, typename S>
JRNN_TARGET void FwdTile(const FwdArgs<S>& a, int64_t t, int64_t b0, int64_t p,
                         PanelShare share) {
  const int64_t T = a.d.T, H = a.d.H, F = a.F;
  Vec acc[MR][4];
  // z = x_t W + b + h_{t-1} R, both products on the packed panel p (x_t W + b precomputed
  // by Project where xw is set, float32 only).
  if (a.xw != nullptr) {
    const int64_t ld = 64 * ((H + 15) / 16);
    for (int r = 0; r < MR; ++r) {
      for (int q = 0; q < 4; ++q) acc[r][q] = LoadU(a.xw + a.d.Row(b0 + r, t) * ld + 64 * p + 16 * q);
    }
  } else {
    InputProduct<MR>(acc, a, a.x + a.d.Row(b0, t) * F, T * F, p, share);
  }
  int64_t ldh;
  const S* hprev = a.h.Prev(t, b0, &ldh);
  Accumulate<MR, 0, 4>(acc, hprev, ldh, PanelAhead<4>(a.rpack, p, H, share), H);
  FwdRows<MR>(a, t, b0, p, acc, hprev, ldh);
}

#if defined(JRNN_AMX)
// The bfloat16 tile on AMX: m <= 16 rows.
JRNN_TARGET void AmxFwdTile(const FwdArgs<bf16>& a, int64_t t, int64_t b0, int m, int64_t p) {
  const int64_t H = a.d.H, u0 = 16 * p;
  const Mask mk = TailMask(static_cast<int>(H - u0));
  Vec init[4];
  for (int q = 0; q < 4; ++q) init[q] = Load(mk, a.bias + q * H + u0);
  AmxForwardTile<0, 4, 0, 4>(a, t, b0, m, p, init,
                             [&a, t, p](int64_t b, const Vec (&acc)[1][4], const bf16* hp,
                                        int64_t ldh) JRNN_TARGET {
                               FwdRows<1>(a, t, b, p, acc, hp, ldh);
                             });
}
#endif

// Recurrences of at most kMaxProjectedBatch rows (streaming) first compute b + x W for all
// steps (Project): a step then reads only R (1 MiB at 256 units) from the cache instead of
// W and R (1.3 MiB with 64 inputs), and the projection runs as one large GEMM. On the AVX2
// benchmark machine (one process, 15 interleaved calls): LSTM (1, 1000, 64, 256) forward
// 16.6 -> 14.3 ms, training step 38.4 -> 35.4; Bidirectional 30.9 -> 27.9 and 69.4 -> 65.0;
// batch 2 forward 21.5 -> 18.9 (training level); batch 4 was slower (23.5 -> 28.2). The
// buffer is one per calling thread, kept between calls (a fresh one would page-fault on
// every call), up to kMaxProjectionBytes.
constexpr int64_t kMaxProjectedBatch = 2;
constexpr int64_t kMaxProjectionBytes = int64_t{64} << 20;

template <typename S>
bool Projects(const std::vector<FwdArgs<S>>& a) {
  const Dims& d = a[0].d;
  const int64_t bytes = 4 * static_cast<int64_t>(a.size()) * d.B * d.T * 64 * ((d.H + 15) / 16);
  return kIsF32<S> && d.B <= kMaxProjectedBatch && bytes <= kMaxProjectionBytes;
}

void Project(ffi::ThreadPool& pool, std::vector<FwdArgs<float>>& a) {
  const Dims& d = a[0].d;
  const int64_t D = static_cast<int64_t>(a.size()), rows = d.B * d.T;
  const int64_t panels = (d.H + 15) / 16, ld = 64 * panels;
  thread_local std::vector<float> scratch;  // the calling thread's (not the helpers')
  if (static_cast<int64_t>(scratch.size()) < D * rows * ld) scratch.resize(D * rows * ld);
  float* const base = scratch.data();
  const int64_t threads = PoolThreads(pool), per = std::max<int64_t>(1, 2 * threads / D);
  ParallelChunks(pool, threads, D * per, [&](int64_t g, const std::atomic<int64_t>&) {
    const int64_t k = g / per, c = g % per;
    const int64_t blocks = (rows + kMaxRows - 1) / kMaxRows;
    const int64_t lo = kMaxRows * (blocks * c / per), hi = std::min(rows, kMaxRows * (blocks * (c + 1) / per));
    float* xw = base + k * rows * ld;
    for (int64_t p = 0; p < panels; ++p) {
      for (int64_t i0 = lo; i0 < hi; i0 += kMaxRows) {
        ByRows(static_cast<int>(std::min<int64_t>(kMaxRows, hi - i0)),
               [&](auto mr) { ProjectTile<mr()>(a[k], i0, p, xw, ld); });
      }
    }
  });
  for (int64_t k = 0; k < D; ++k) a[k].xw = base + k * rows * ld;
}

// Every direction's recurrence (one FwdArgs each).
template <typename S>
void Forward(ffi::ThreadPool& pool, std::vector<FwdArgs<S>>& a) {
  if constexpr (kIsF32<S>) {
    if (Projects(a)) Project(pool, a);
  }
  const Dims& d = a[0].d;
  const int64_t panels = (d.H + 15) / 16, fmas = d.B * (a[0].F + d.H) * 4 * d.H;
#if defined(JRNN_AMX)
  if constexpr (!kIsF32<S>) {
    if (AmxEnabled()) {
      RecurDirections<kAmxRows, AmxSession>(
          pool, a, panels, fmas,
          [](int m, const FwdArgs<S>& k, int64_t t, int64_t b0, int64_t p, PanelShare) {
            AmxFwdTile(k, t, b0, m, p);
          });
      return;
    }
  }
#endif
  RecurDirections(pool, a, panels, fmas,
                  [](auto mr, const FwdArgs<S>& k, int64_t t, int64_t b0, int64_t p,
                     PanelShare share) { FwdTile<mr(), S>(k, t, b0, p, share); });
}

// ------------------------------------------------------------------ backward
template <typename S>
struct BwdArgs {
  Dims d;
  const S* rtpack;
  const S* gates;
  const float* cseq;
  const S *y, *h0, *c0, *dy;
  const float *dhT, *dcT;
  S *dz, *hprev;
  float* dc0;  // also carries dc between steps
  const uint8_t* mask;  // (B, T), 0: a step that kept the state; null: none
  float* dhc;  // with a mask: the dh a masked step passes to the step before (B, H)
};

// What the step after t passes back directly: with a mask, dhc carries dh past masked steps
// (it starts as dhT); else dhT at the last step.
template <typename S>
const float* Carry(const BwdArgs<S>& a, int64_t t) {
  return a.mask != nullptr ? a.dhc : (t == a.d.T - 1 ? a.dhT : nullptr);
}

// The gate gradients of MR rows b0.. on panel p from their incoming dh (acc).
template <int MR, typename S>
JRNN_TARGET inline void BwdRows(const BwdArgs<S>& a, int64_t t, int64_t b0, int64_t p,
                                const Mask (&m)[4], const Vec (&acc)[MR][4]) {
  const int64_t T = a.d.T, H = a.d.H, G = 4 * H;
  const int64_t u0 = 64 * p;
  const Vec zero = Zero();
  for (int r = 0; r < MR; ++r) {
    const int64_t b = b0 + r;
    const bool masked = a.d.Masked(a.mask, b, t);
    for (int q = 0; q < 4; ++q) {
      const Mask mq = m[q];
      if (mq == 0) continue;
      const int64_t u = u0 + 16 * q;
      if (masked) {  // h and c passed through: dh and dc pass on; no gate gradients
        S* dz = a.dz + a.d.Row(b, t) * G + u;
        for (int k = 0; k < 4; ++k) Store(mq, dz + k * H, zero);
        Store(mq, a.dhc + b * H + u, acc[r][q]);
        if (t == T - 1) Store(mq, a.dc0 + b * H + u, Load(mq, a.dcT + b * H + u));
        continue;
      }
      if (a.mask != nullptr) Store(mq, a.dhc + b * H + u, zero);
      const Vec c = Load(mq, a.cseq + a.d.Row(b, t) * H + u);
      const Vec c_prev =
          t == 0 ? Load(mq, a.c0 + b * H + u) : Load(mq, a.cseq + a.d.Row(b, t - 1) * H + u);
      const Vec dc_next = Load(mq, (t == T - 1 ? a.dcT : a.dc0) + b * H + u);
      const Vec dc_prev = LstmStepGrads(mq, acc[r][q], dc_next, a.gates + a.d.Row(b, t) * G + u,
                                           H, c, c_prev, a.dz + a.d.Row(b, t) * G + u);
      Store(mq, a.dc0 + b * H + u, dc_prev);
    }
  }
}

template <int MR, typename S>
JRNN_TARGET void BwdTile(const BwdArgs<S>& a, int64_t t, int64_t b0, int64_t p,
                         PanelShare share) {
  Mask m[4];
  UnitMasks(a.d.H, p, m);
  Vec acc[MR][4];  // dh_t = dy_t (+ dh_T at the last step) + dz_{t+1} Rᵀ
  IncomingDh<MR, S>(acc, m, a.d, 4 * a.d.H, t, b0, p, share, a.dy, Carry(a, t), a.dz, a.rtpack);
  StorePrevH<MR, S>(a.d, t, b0, p, a.y, a.h0, a.hprev);
  BwdRows<MR>(a, t, b0, p, m, acc);
}

#if defined(JRNN_AMX)
// The bfloat16 tile on AMX: rows <= 16.
JRNN_TARGET void AmxBwdTile(const BwdArgs<bf16>& a, int64_t t, int64_t b0, int rows, int64_t p) {
  Mask m[4];
  UnitMasks(a.d.H, p, m);
  alignas(64) float dh[kAmxRows][64];
  AmxIncomingDh(dh, m, a.d, 4 * a.d.H, t, b0, rows, p, a.dy, Carry(a, t), a.dz, a.rtpack);
  StorePrevH(a.d, t, b0, rows, p, a.y, a.h0, a.hprev);
  for (int r = 0; r < rows; ++r) {
    Vec acc[1][4];
    AmxRow(dh, r, acc);
    BwdRows<1>(a, t, b0 + r, p, m, acc);
  }
}
#endif

template <typename S>
void Backward(ffi::ThreadPool& pool, const BwdArgs<S>& a) {
  const int64_t panels = (a.d.H + 63) / 64, fmas = a.d.B * a.d.H * 4 * a.d.H;
#if defined(JRNN_AMX)
  if constexpr (!kIsF32<S>) {
    if (AmxEnabled()) {
      Recur<kAmxRows, AmxSession>(pool, a.d.B, a.d.T, panels, fmas, true,
                                  [&](int rows, int64_t t, int64_t b0, int64_t p, PanelShare) {
                                    AmxBwdTile(a, t, b0, rows, p);
                                  });
      return;
    }
  }
#endif
  Recur(pool, a.d.B, a.d.T, panels, fmas, true,
        [&](auto mr, int64_t t, int64_t b0, int64_t p, PanelShare share) {
          BwdTile<mr(), S>(a, t, b0, p, share);
        });
}

}  // namespace
}  // namespace JRNN_ISA
}  // namespace jrnn
#endif  // JRNN_X86

namespace jrnn {
namespace JRNN_ISA {
namespace {

ffi::Error LstmFwdImpl(ffi::AnyBuffer x, ffi::AnyBuffer wpack, ffi::AnyBuffer bias,
                       ffi::AnyBuffer rpack, ffi::AnyBuffer h0, ffi::AnyBuffer c0,
                       ffi::AnyBuffer mask, ffi::AnyBuffer y_in, ffi::Result<ffi::AnyBuffer> y,
                       ffi::Result<ffi::AnyBuffer> hT, ffi::Result<ffi::AnyBuffer> cT,
                       ffi::Result<ffi::AnyBuffer> gates, ffi::Result<ffi::AnyBuffer> cseq,
                       ffi::ThreadPool pool, bool reverse, int64_t slot) {
#if defined(JRNN_X86)
  PoisonFreshResults({x, wpack, bias, rpack, h0, c0, mask, y_in}, {*y, *hT, *cT, *gates, *cseq});
  ForwardDims d;
  JRNN_CHECK(ReadForwardDims("LSTM", x.dimensions(), h0.dimensions(), y->dimensions(),
                             gates->element_count(), slot, &d));
  JRNN_CHECK(CheckYIn(y_in, y->untyped_data()));
  const int64_t B = d.B, T = d.T, F = d.F, H = d.H, D = d.D;
  const bool sequence = d.sequence, save = d.save;
  const uint8_t* steps = nullptr;
  JRNN_CHECK(ReadMask(mask, B, T, &steps));
  return ByStorage("LSTM", x.element_type(), [&](auto s) -> ffi::Error {
    using S = decltype(s);
    constexpr ffi::DataType dt = kDataType<S>, f32 = ffi::DataType::F32;
    JRNN_CHECK(CheckTypes({{"wpack", wpack.element_type(), dt},
                           {"rpack", rpack.element_type(), dt},
                           {"h0", h0.element_type(), dt},
                           {"c0", c0.element_type(), dt},
                           {"y", y->element_type(), dt},
                           {"hT", hT->element_type(), dt},
                           {"cT", cT->element_type(), dt},
                           {"bias", bias.element_type(), f32},
                           {"gates", gates->element_type(), dt},
                           {"cseq", cseq->element_type(), f32}}));
    JRNN_CHECK(CheckPacked<S>("wpack", wpack.dimensions(), (H + 15) / 16, F, 64, D));
    JRNN_CHECK(CheckDims("bias", bias.dimensions(), {D, 4 * H}));
    JRNN_CHECK(CheckPacked<S>("rpack", rpack.dimensions(), (H + 15) / 16, H, 64, D));
    JRNN_CHECK(CheckDims("c0", c0.dimensions(), {D, B, H}));
    JRNN_CHECK(CheckDims("hT", hT->dimensions(), {D, B, H}));
    JRNN_CHECK(CheckDims("cT", cT->dimensions(), {D, B, H}));
    if (save) {
      JRNN_CHECK(CheckSaved("gates", gates->dimensions(), D, B, T, 4 * H));
      JRNN_CHECK(CheckSaved("cseq", cseq->dimensions(), D, B, T, H));
    }
    if (B == 0 || H == 0) return ffi::Error::Success();
    if (T == 0) {
      std::copy(Data<S>(h0), Data<S>(h0) + D * B * H, Data<S>(hT));
      std::copy(Data<S>(c0), Data<S>(c0) + D * B * H, Data<S>(cT));
      return ffi::Error::Success();
    }
    // Direction k runs backwards in time when reverse != (k odd): a bidirectional call
    // (D = 2) runs forwards then backwards; reverse alone is one go_backwards layer.
    std::vector<std::vector<S>> buffers(D);
    std::vector<float> c32(kIsF32<S> ? 0 : D * B * H);
    std::vector<FwdArgs<S>> a;
    for (int64_t k = 0; k < D; ++k) {
      const Dims dk{B, T, H, reverse != (k % 2 == 1)};
      const int64_t state = k * B * H;
      S* yk = sequence ? Data<S>(y) + (slot * D + k) * H : nullptr;
      a.push_back({dk,
                   F,
                   Data<S>(x),
                   Data<S>(wpack) + k * (wpack.element_count() / D),
                   Data<float>(bias) + k * 4 * H,
                   Data<S>(rpack) + k * (rpack.element_count() / D),
                   Data<S>(c0) + state,
                   HSeq<S>::Make(yk, Data<S>(h0) + state, dk, d.slots * D * H, &buffers[k]),
                   Data<S>(hT) + state,
                   Data<S>(cT) + state,
                   (kIsF32<S> ? reinterpret_cast<float*>(Data<S>(cT)) : c32.data()) + state,
                   save ? Data<S>(gates) + k * B * T * 4 * H : nullptr,
                   save ? Data<float>(cseq) + k * B * T * H : nullptr,
                   steps});
    }
    if (save) AdviseHugePages(gates, cseq, y);
    Forward(pool, a);
    return ffi::Error::Success();
  });
#else
  return Unsupported();
#endif
}

ffi::Error LstmBwdImpl(ffi::AnyBuffer rtpack, ffi::AnyBuffer gates, ffi::AnyBuffer cseq,
                       ffi::AnyBuffer y, ffi::AnyBuffer h0, ffi::AnyBuffer c0, ffi::AnyBuffer dy,
                       ffi::AnyBuffer dhT, ffi::AnyBuffer dcT, ffi::AnyBuffer mask,
                       ffi::Result<ffi::AnyBuffer> dz, ffi::Result<ffi::AnyBuffer> hprev,
                       ffi::Result<ffi::AnyBuffer> dc0, ffi::Result<ffi::AnyBuffer> dhc,
                       ffi::ThreadPool pool, bool reverse, int64_t slot) {
#if defined(JRNN_X86)
  PoisonFreshResults({rtpack, gates, cseq, y, h0, c0, dy, dhT, dcT, mask}, {*dz, *hprev, *dc0, *dhc});
  const auto gd = gates.dimensions();
  if (gd.size() != 3 || gd[2] % 4 != 0) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "jrnn native LSTM: gates must be (B, T, 4H)");
  }
  const int64_t B = gd[0], T = gd[1], H = gd[2] / 4;
  const uint8_t* steps = nullptr;
  JRNN_CHECK(ReadMask(mask, B, T, &steps));
  return ByStorage("LSTM", dy.element_type(), [&](auto s) -> ffi::Error {
    using S = decltype(s);
    constexpr ffi::DataType dt = kDataType<S>, f32 = ffi::DataType::F32;
    JRNN_CHECK(CheckTypes({{"rtpack", rtpack.element_type(), dt},
                           {"y", y.element_type(), dt},
                           {"h0", h0.element_type(), dt},
                           {"c0", c0.element_type(), dt},
                           {"dz", dz->element_type(), dt},
                           {"hprev", hprev->element_type(), dt},
                           {"gates", gates.element_type(), dt},
                           {"cseq", cseq.element_type(), f32},
                           {"dhT", dhT.element_type(), f32},
                           {"dcT", dcT.element_type(), f32},
                           {"dc0", dc0->element_type(), f32},
                           {"dhc", dhc->element_type(), f32}}));
    JRNN_CHECK(CheckPacked<S>("rtpack", rtpack.dimensions(), (H + 63) / 64, 4 * H, 64));
    JRNN_CHECK(CheckDims("cseq", cseq.dimensions(), {B, T, H}));
    int64_t slots;
    JRNN_CHECK(ReadSlot("dy", dy.dimensions(), B, T, H, slot, &slots));
    JRNN_CHECK(CheckDims("y", y.dimensions(), {B, T, slots * H}));
    JRNN_CHECK(CheckDims("h0", h0.dimensions(), {B, H}));
    JRNN_CHECK(CheckDims("c0", c0.dimensions(), {B, H}));
    JRNN_CHECK(CheckDims("dhT", dhT.dimensions(), {B, H}));
    JRNN_CHECK(CheckDims("dcT", dcT.dimensions(), {B, H}));
    JRNN_CHECK(CheckDims("dz", dz->dimensions(), {B, T, 4 * H}));
    JRNN_CHECK(CheckDims("hprev", hprev->dimensions(), {B, T, H}));
    JRNN_CHECK(CheckDims("dhc", dhc->dimensions(), {B, H}));
    if (B == 0 || H == 0) return ffi::Error::Success();
    float* carried = StartCarry(dhc, dhT, steps != nullptr || T == 0);
    if (T == 0) {
      std::copy(Data<float>(dcT), Data<float>(dcT) + B * H, Data<float>(dc0));
      return ffi::Error::Success();
    }
    BwdArgs<S> a{{B, T, H, reverse, slots * H}, Data<S>(rtpack), Data<S>(gates), Data<float>(cseq),
                 Data<S>(y) + slot * H, Data<S>(h0), Data<S>(c0),  Data<S>(dy) + slot * H,
                 Data<float>(dhT), Data<float>(dcT),  Data<S>(dz),        Data<S>(hprev),
                 Data<float>(dc0), steps,          carried};
    AdviseHugePagesUnlessOverDy(slots, hprev);
    Backward(pool, a);
    return ffi::Error::Success();
  });
#else
  return Unsupported();
#endif
}

}  // namespace
}  // namespace JRNN_ISA
}  // namespace jrnn

XLA_FFI_DEFINE_HANDLER_SYMBOL(JRNN_SYMBOL(jrnn_lstm_fwd), jrnn::JRNN_ISA::LstmFwdImpl,
                              (jrnn::AnyBinding<8, 5>().Attr<bool>("reverse").Attr<int64_t>("slot")));

XLA_FFI_DEFINE_HANDLER_SYMBOL(JRNN_SYMBOL(jrnn_lstm_bwd), jrnn::JRNN_ISA::LstmBwdImpl,
                              (jrnn::AnyBinding<10, 4>().Attr<bool>("reverse").Attr<int64_t>("slot")));
