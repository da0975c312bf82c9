// jrnn native CPU SimpleRNN with tanh (Keras' default; XLA FFI custom calls); shared
// machinery in common.h.
//
//   jrnn_simple_fwd: for t in 0..T-1:  h = tanh(x[:, t] W + b + h R);  y[:, t] = h
//   jrnn_simple_bwd: dz[:, t] = (dy[:, t] + dz[:, t+1] Rᵀ) (1 - y[:, t]²), in place over dy
//                    (XLA aliases the two); the weight gradients (Xᵀ dz, Hᵀ dz, Σ dz) are
//                    dense.cc's (float32; H read from y and h0 in place), dz Wᵀ is XLA's.
//
// One register tile holds 64 consecutive units (4 accumulators) of up to 6 batch rows.
//
// The forward kernel also runs on bfloat16 x, h0, weights and outputs: products accumulate
// in float32, tanh is float32 and h is rounded to bfloat16 as it is stored; the bias stays
// float32; the backward kernel writes bfloat16 dz with dh float32 (common.h: bfloat16
// panels).
//
// Backwards in time, D directions per forward call and masks: as the LSTM kernel
// (lstm.cc), with `dhc` (B, H) carrying dh past masked steps.
//
// Layouts (row-major float32; the forward kernel's b, h0, hT and packed weights have a
// leading D, and its y is (B, T, D H)):
//   x (B, T, F)   b (H)   y (B, T, H)   h0, hT (B, H)   dz (B, T, H)
//   wpack (ceil(H/64), F, 64)   [k][j] = W[k, 64p + j]   (zero past H)
//   rpack (ceil(H/64), H, 64)   [k][j] = R[k, 64p + j]
//   rtpack (ceil(H/64), H, 64)  [k][j] = R[64p + j, k]
//   (the AVX2 build's float32 panels hold the same elements block by block: [k][16q + j] at
//   16 K q + 16 k + j of panel p, K its rows: PackedPanel in common.h)
#include <algorithm>
#include <cstdint>
#include <vector>

#include "common.h"

#if defined(JRNN_X86)
namespace jrnn {
namespace JRNN_ISA {
namespace {

template <typename S>
struct SimpleFwdArgs {
  Dims d;
  int64_t F;
  const S *x, *wpack;
  const float* bias;
  const S* rpack;
  HSeq<S> h;
  S* hT;
  const uint8_t* mask;  // (B, T), 0: the step keeps h; null: none
};

// The biases of panel p's 64 units (zero past H) and the panel's lane masks.
template <typename S>
JRNN_TARGET inline void SimpleInit(const SimpleFwdArgs<S>& a, int64_t p, Vec (&init)[4],
                                   Mask (&m)[4]) {
  const int64_t u0 = 64 * p;
  for (int q = 0; q < 4; ++q) {
    m[q] = TailMask(static_cast<int>(a.d.H - u0 - 16 * q));
    init[q] = Load(m[q], a.bias + u0 + 16 * q);
  }
}

// h = tanh(acc) of MR rows b0.. on panel p; hprev: their h_{t-1}, rows ldh apart.
template <int MR, typename S>
JRNN_TARGET inline void SimpleFwdRows(const SimpleFwdArgs<S>& a, int64_t t, int64_t b0,
                                      int64_t p, const Mask (&m)[4], const Vec (&acc)[MR][4],
                                      const S* hprev, int64_t ldh) {
  const int64_t T = a.d.T, H = a.d.H, u0 = 64 * p;
  for (int r = 0; r < MR; ++r) {
    const int64_t b = b0 + r;
    const bool masked = a.d.Masked(a.mask, b, t);
    for (int q = 0; q < 4; ++q) {
      if (m[q] == 0) continue;
      const Vec h = masked ? Load(m[q], hprev + r * ldh + u0 + 16 * q) : Tanh(acc[r][q]);
      Store(m[q], a.h.Out(t, b) + u0 + 16 * q, h);
      if (t == T - 1) Store(m[q], a.hT + b * H + u0 + 16 * q, h);
    }
  }
}

template <int MR, typename S>
JRNN_TARGET void SimpleFwdTile(const SimpleFwdArgs<S>& a, int64_t t, int64_t b0, int64_t p,
                               PanelShare share) {
  const int64_t T = a.d.T, H = a.d.H, F = a.F;
  Mask m[4];
  Vec init[4], acc[MR][4];
  SimpleInit(a, p, init, m);
  SetRows(acc, init);
  int64_t ldh;
  const S* hprev = a.h.Prev(t, b0, &ldh);
  Accumulate<MR, 0, 4>(acc, a.x + a.d.Row(b0, t) * F, T * F,
                       PanelAhead<4>(a.wpack, p, F, share), F);
  Accumulate<MR, 0, 4>(acc, hprev, ldh, PanelAhead<4>(a.rpack, p, H, share), H);
  SimpleFwdRows<MR>(a, t, b0, p, m, acc, hprev, ldh);
}

#if defined(JRNN_AMX)
// The bfloat16 tile on AMX: rows <= 16.
JRNN_TARGET void AmxSimpleFwdTile(const SimpleFwdArgs<bf16>& a, int64_t t, int64_t b0, int rows,
                                  int64_t p) {
  Mask m[4];
  Vec init[4];
  SimpleInit(a, p, init, m);
  AmxForwardTile<0, 4, 0, 4>(a, t, b0, rows, p, init,
                             [&a, t, p, m](int64_t b, const Vec (&acc)[1][4], const bf16* hp,
                                           int64_t ldh) JRNN_TARGET {
                               SimpleFwdRows<1>(a, t, b, p, m, acc, hp, ldh);
                             });
}
#endif

template <typename S>
struct SimpleBwdArgs {
  Dims d;
  const S *rtpack, *y, *dy;
  const float* dhT;
  S* dz;
  const uint8_t* mask;  // (B, T), 0: a step that kept h; null: none
  float* dhc;           // with a mask: the dh a masked step passes to the step before (B, H)
};

// What the step after t passes back directly: with a mask, dhc carries dh past masked steps
// (it starts as dhT); else dhT at the last step.
template <typename S>
const float* SimpleCarry(const SimpleBwdArgs<S>& a, int64_t t) {
  return a.mask != nullptr ? a.dhc : (t == a.d.T - 1 ? a.dhT : nullptr);
}

// dz = dh (1 - h²) of MR rows b0.. on panel p from their incoming dh (acc).
template <int MR, typename S>
JRNN_TARGET inline void SimpleBwdRows(const SimpleBwdArgs<S>& a, int64_t t, int64_t b0, int64_t p,
                                      const Mask (&m)[4], const Vec (&acc)[MR][4]) {
  const int64_t H = a.d.H, u0 = 64 * p;
  const Vec one = Set1(1.0f), zero = Zero();
  for (int r = 0; r < MR; ++r) {
    const int64_t b = b0 + r;
    const bool masked = a.d.Masked(a.mask, b, t);
    for (int q = 0; q < 4; ++q) {
      if (m[q] == 0) continue;
      const int64_t at = a.d.Row(b, t) * H + u0 + 16 * q;  // dz's (y's: YRow)
      if (a.mask != nullptr) Store(m[q], a.dhc + b * H + u0 + 16 * q, masked ? acc[r][q] : zero);
      if (masked) {  // h passed through: dh passes on (dhc); no pre-activation gradient
        Store(m[q], a.dz + at, zero);
        continue;
      }
      const Vec h = Load(m[q], a.y + a.d.YRow(b, t) + u0 + 16 * q);
      Store(m[q], a.dz + at, Mul(acc[r][q], Fnmadd(h, h, one)));
    }
  }
}

template <int MR, typename S>
JRNN_TARGET void SimpleBwdTile(const SimpleBwdArgs<S>& a, int64_t t, int64_t b0, int64_t p,
                               PanelShare share) {
  Mask m[4];
  UnitMasks(a.d.H, p, m);
  Vec acc[MR][4];  // dh_t = dy_t (+ dh_T at the last step) + dz_{t+1} Rᵀ
  IncomingDh<MR, S>(acc, m, a.d, a.d.H, t, b0, p, share, a.dy, SimpleCarry(a, t), a.dz, a.rtpack);
  SimpleBwdRows<MR>(a, t, b0, p, m, acc);
}

#if defined(JRNN_AMX)
// The bfloat16 tile on AMX: rows <= 16.
JRNN_TARGET void AmxSimpleBwdTile(const SimpleBwdArgs<bf16>& a, int64_t t, int64_t b0, int rows,
                                  int64_t p) {
  Mask m[4];
  UnitMasks(a.d.H, p, m);
  alignas(64) float dh[kAmxRows][64];
  AmxIncomingDh(dh, m, a.d, a.d.H, t, b0, rows, p, a.dy, SimpleCarry(a, t), a.dz, a.rtpack);
  for (int r = 0; r < rows; ++r) {
    Vec acc[1][4];
    AmxRow(dh, r, acc);
    SimpleBwdRows<1>(a, t, b0 + r, p, m, acc);
  }
}
#endif

}  // namespace
}  // namespace JRNN_ISA
}  // namespace jrnn
#endif  // JRNN_X86

namespace jrnn {
namespace JRNN_ISA {
namespace {

ffi::Error SimpleFwdImpl(ffi::AnyBuffer x, ffi::AnyBuffer wpack, ffi::AnyBuffer bias,
                         ffi::AnyBuffer rpack, ffi::AnyBuffer h0, ffi::AnyBuffer mask,
                         ffi::AnyBuffer y_in, ffi::Result<ffi::AnyBuffer> y,
                         ffi::Result<ffi::AnyBuffer> hT, ffi::ThreadPool pool, bool reverse,
                         int64_t slot) {
#if defined(JRNN_X86)
  PoisonFreshResults({x, wpack, bias, rpack, h0, mask, y_in}, {*y, *hT});
  ForwardDims d;
  JRNN_CHECK(ReadForwardDims("SimpleRNN", x.dimensions(), h0.dimensions(), y->dimensions(), 0,
                             slot, &d));
  JRNN_CHECK(CheckYIn(y_in, y->untyped_data()));
  const int64_t B = d.B, T = d.T, F = d.F, H = d.H, D = d.D;
  const bool sequence = d.sequence;
  const uint8_t* steps = nullptr;
  JRNN_CHECK(ReadMask(mask, B, T, &steps));
  return ByStorage("SimpleRNN", x.element_type(), [&](auto s) -> ffi::Error {
    using S = decltype(s);
    constexpr ffi::DataType dt = kDataType<S>, f32 = ffi::DataType::F32;
    JRNN_CHECK(CheckTypes({{"wpack", wpack.element_type(), dt},
                           {"rpack", rpack.element_type(), dt},
                           {"h0", h0.element_type(), dt},
                           {"y", y->element_type(), dt},
                           {"hT", hT->element_type(), dt},
                           {"bias", bias.element_type(), f32}}));
    JRNN_CHECK(CheckPacked<S>("wpack", wpack.dimensions(), (H + 63) / 64, F, 64, D));
    JRNN_CHECK(CheckDims("bias", bias.dimensions(), {D, H}));
    JRNN_CHECK(CheckPacked<S>("rpack", rpack.dimensions(), (H + 63) / 64, H, 64, D));
    JRNN_CHECK(CheckDims("hT", hT->dimensions(), {D, B, H}));
    if (B == 0 || H == 0) return ffi::Error::Success();
    if (T == 0) {
      std::copy(Data<S>(h0), Data<S>(h0) + D * B * H, Data<S>(hT));
      return ffi::Error::Success();
    }
    // Direction k runs backwards in time when reverse != (k odd) (as the LSTM's).
    std::vector<std::vector<S>> buffers(D);
    std::vector<SimpleFwdArgs<S>> a;
    for (int64_t k = 0; k < D; ++k) {
      const Dims dk{B, T, H, reverse != (k % 2 == 1)};
      a.push_back({dk,
                   F,
                   Data<S>(x),
                   Data<S>(wpack) + k * (wpack.element_count() / D),
                   Data<float>(bias) + k * H,
                   Data<S>(rpack) + k * (rpack.element_count() / D),
                   HSeq<S>::Make(sequence ? Data<S>(y) + (slot * D + k) * H : nullptr,
                                 Data<S>(h0) + k * B * H, dk, d.slots * D * H, &buffers[k]),
                   Data<S>(hT) + k * B * H,
                   steps});
    }
#if defined(JRNN_AMX)
    if constexpr (!kIsF32<S>) {
      if (AmxEnabled()) {
        RecurDirections<kAmxRows, AmxSession>(
            pool, a, (H + 63) / 64, B * (F + H) * H,
            [](int m, const SimpleFwdArgs<S>& k, int64_t t, int64_t b0, int64_t p, PanelShare) {
              AmxSimpleFwdTile(k, t, b0, m, p);
            });
        return ffi::Error::Success();
      }
    }
#endif
    RecurDirections(pool, a, (H + 63) / 64, B * (F + H) * H,
                    [](auto mr, const SimpleFwdArgs<S>& k, int64_t t, int64_t b0, int64_t p,
                       PanelShare share) { SimpleFwdTile<mr(), S>(k, t, b0, p, share); });
    return ffi::Error::Success();
  });
#else
  return Unsupported();
#endif
}

ffi::Error SimpleBwdImpl(ffi::AnyBuffer rtpack, ffi::AnyBuffer y, ffi::AnyBuffer dy,
                         ffi::AnyBuffer dhT, ffi::AnyBuffer mask, ffi::Result<ffi::AnyBuffer> dz,
                         ffi::Result<ffi::AnyBuffer> dhc, ffi::ThreadPool pool, bool reverse,
                         int64_t slot) {
#if defined(JRNN_X86)
  PoisonFreshResults({rtpack, y, dy, dhT, mask}, {*dz, *dhc});
  const auto zd = dz->dimensions();
  if (zd.size() != 3) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      "jrnn native SimpleRNN: dz must be (B, T, H)");
  }
  const int64_t B = zd[0], T = zd[1], H = zd[2];
  const uint8_t* steps = nullptr;
  JRNN_CHECK(ReadMask(mask, B, T, &steps));
  return ByStorage("SimpleRNN", dy.element_type(), [&](auto s) -> ffi::Error {
    using S = decltype(s);
    constexpr ffi::DataType dt = kDataType<S>, f32 = ffi::DataType::F32;
    JRNN_CHECK(CheckTypes({{"rtpack", rtpack.element_type(), dt},
                           {"y", y.element_type(), dt},
                           {"dz", dz->element_type(), dt},
                           {"dhT", dhT.element_type(), f32},
                           {"dhc", dhc->element_type(), f32}}));
    JRNN_CHECK(CheckPacked<S>("rtpack", rtpack.dimensions(), (H + 63) / 64, H, 64));
    int64_t slots;
    JRNN_CHECK(ReadSlot("dy", dy.dimensions(), B, T, H, slot, &slots));
    JRNN_CHECK(CheckDims("y", y.dimensions(), {B, T, slots * H}));
    JRNN_CHECK(CheckDims("dhT", dhT.dimensions(), {B, H}));
    JRNN_CHECK(CheckDims("dhc", dhc->dimensions(), {B, H}));
    if (B == 0 || H == 0) return ffi::Error::Success();
    float* carried = StartCarry(dhc, dhT, steps != nullptr || T == 0);
    if (T == 0) return ffi::Error::Success();
    const SimpleBwdArgs<S> a{{B, T, H, reverse, slots * H},
                             Data<S>(rtpack),
                             Data<S>(y) + slot * H,
                             Data<S>(dy) + slot * H,
                             Data<float>(dhT),
                             Data<S>(dz),
                             steps,
                             carried};
    AdviseHugePagesUnlessOverDy(slots, dz);
#if defined(JRNN_AMX)
    if constexpr (!kIsF32<S>) {
      if (AmxEnabled()) {
        Recur<kAmxRows, AmxSession>(pool, B, T, (H + 63) / 64, B * H * H, true,
                                    [&](int rows, int64_t t, int64_t b0, int64_t p, PanelShare) {
                                      AmxSimpleBwdTile(a, t, b0, rows, p);
                                    });
        return ffi::Error::Success();
      }
    }
#endif
    Recur(pool, B, T, (H + 63) / 64, B * H * H, true,
          [&](auto mr, int64_t t, int64_t b0, int64_t p, PanelShare share) {
            SimpleBwdTile<mr(), S>(a, t, b0, p, share);
          });
    return ffi::Error::Success();
  });
#else
  return Unsupported();
#endif
}

}  // namespace
}  // namespace JRNN_ISA
}  // namespace jrnn

XLA_FFI_DEFINE_HANDLER_SYMBOL(JRNN_SYMBOL(jrnn_simple_fwd), jrnn::JRNN_ISA::SimpleFwdImpl,
                              (jrnn::AnyBinding<7, 2>().Attr<bool>("reverse").Attr<int64_t>("slot")));

XLA_FFI_DEFINE_HANDLER_SYMBOL(JRNN_SYMBOL(jrnn_simple_bwd), jrnn::JRNN_ISA::SimpleBwdImpl,
                              (jrnn::AnyBinding<5, 2>().Attr<bool>("reverse").Attr<int64_t>("slot")));
