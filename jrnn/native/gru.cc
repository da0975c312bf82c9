// jrnn native CPU GRU, reset_after=True (Keras 3's default and CuDNNGRU's maths; XLA FFI
// custom calls); shared machinery in common.h.
//
//   jrnn_gru_fwd: for t in 0..T-1:
//       x_z, x_r, x_h = x[:, t] W + b_i;   m_z, m_r, m_h = h R + b_r
//       z = σ(x_z + m_z);  r = σ(x_r + m_r);  h~ = tanh(x_h + r m_h);  h = z h + (1 - z) h~
//   jrnn_gru_bwd: the reverse recurrence. Per step it writes the pre-activation gradients
//       gzr = (dz·z(1-z), dr·r(1-r)),  gax = da,  gah = da·r      (da = dh~·(1 - h~²))
//   in three arrays: the gradient of x W + b_i is (gzr, gax), that of h R + b_r is
//   (gzr, gah). It carries dh_{t-1} = dh·z + (gzr, gah) Rᵀ and writes h_{t-1} (hprev).
//   The weight and input gradients (Xᵀ (gzr, gax), hprevᵀ (gzr, gah), ...) are one
//   product per array (dense.cc for the weights in float32, XLA for dx): a column slice of
//   a single array would be copied into a fresh buffer first, and products over a
//   superset of the columns would waste a fourth of their FLOPs.
//   In place: the three reuse the buffers of the saved zr, h~ and m_h they replace
//   (both dtypes), and hprev that of dy (each entry is read before it is overwritten), so a
//   training step maps no (B, T, ·) buffer beyond what the forward pass saved and dy.
//
// The register tile keeps four accumulators per row: [x_h, z, r, m_h]; the input product
// fills the first three, the recurrent product the last three, so x_h and m_h stay apart
// (r multiplies only m_h).
//
// The forward kernel also runs on bfloat16 x, h0, weights and outputs (y, hT): products
// accumulate in float32, the gate maths is float32, and h is rounded to bfloat16 as it is
// stored (the next step reads that). The biases stay float32, the saved zr, hh and mh
// are bfloat16; the backward kernel writes bfloat16 gradients over them (dh float32).
// bfloat16 panels interleave pairs of rows (common.h).
//
// Backwards in time, D directions per forward call and masks: as the LSTM kernel (lstm.cc);
// a masked step keeps h, and its backward step writes zero gate gradients and passes all
// of dh to the step before (through dh0, which carries dh·z otherwise).
//
// Layouts (row-major, float32 or bfloat16 as above; gate blocks z, r, h in Keras' order;
// the forward kernel's per-direction arrays have a leading D, its saved ones too unless
// D = 1):
//   x (B, T, F)   bi, br (3H)   y (B, T, H)   (forward: y (B, T, D H))
//   saved: zr (B, T, 2H) = z, r   hh (B, T, H) = h~   mh (B, T, H) = m_h per step
//   wpack (ceil(H/16), F, 48)   [k][q*16+j] = W[k, blk(q) H + 16p + j], blk = (h, z, r)
//   rpack (ceil(H/16), H, 48)   [k][q*16+j] = R[k, q H + 16p + j]       (z, r, h)
//   rtpack (ceil(H/64), 3H, 64) [k][j]      = R[64p + j, k]
//   (the AVX2 build's float32 panels hold the same elements block by block: [k][16q + j] at
//   16 K q + 16 k + j of panel p, K its rows: PackedPanel in common.h)
//   h0, hT, dh0 (B, H)   gzr (B, T, 2H)   gax, gah, hprev (B, T, H)
#include <algorithm>
#include <cstdint>
#include <vector>

#include "common.h"

#if defined(JRNN_X86)
namespace jrnn {
namespace JRNN_ISA {
namespace {

template <typename S>
struct GruFwdArgs {
  Dims d;
  int64_t F;
  const S* x;
  const S* wpack;
  const float *bi, *br;
  const S* rpack;
  HSeq<S> h;
  S* hT;
  S *zr, *hh, *mh;  // null unless saving for the backward pass
  const uint8_t* mask;  // (B, T), 0: the step keeps h; null: none
};

// The pre-activation sums of a tile's first block: acc[0] = bi_h + x Wh, acc[1..2] =
// bi_z + br_z, bi_r + br_r (+ x W and h R of z and r), acc[3] = br_h + h Rh.
template <typename S>
JRNN_TARGET inline void GruInit(const GruFwdArgs<S>& a, int64_t p, Vec (&init)[4]) {
  const int64_t H = a.d.H, u0 = 16 * p;
  const Mask m = TailMask(static_cast<int>(H - u0));
  init[0] = Load(m, a.bi + 2 * H + u0);
  init[1] = Add(Load(m, a.bi + u0), Load(m, a.br + u0));
  init[2] = Add(Load(m, a.bi + H + u0), Load(m, a.br + H + u0));
  init[3] = Load(m, a.br + 2 * H + u0);
}

// The gate maths of MR rows b0.. on panel p from their sums acc (GruInit); hprev: their
// h_{t-1}, rows ldh apart.
template <int MR, typename S>
JRNN_TARGET inline void GruFwdRows(const GruFwdArgs<S>& a, int64_t t, int64_t b0, int64_t p,
                                   const Vec (&acc)[MR][4], const S* hprev, int64_t ldh) {
  const int64_t T = a.d.T, H = a.d.H;
  const int64_t u0 = 16 * p;
  const Mask m = TailMask(static_cast<int>(H - u0));
  for (int r = 0; r < MR; ++r) {
    const int64_t b = b0 + r;
    const Vec z = Sigmoid(acc[r][1]), rr = Sigmoid(acc[r][2]);
    const Vec hh = Tanh(Fmadd(rr, acc[r][3], acc[r][0]));
    const Vec hp = Load(m, hprev + r * ldh + u0);
    // h = z h_prev + (1 - z) h~ = h~ + z (h_prev - h~)
    const Vec h = a.d.Masked(a.mask, b, t) ? hp : Fmadd(z, Sub(hp, hh), hh);
    Store(m, a.h.Out(t, b) + u0, h);
    if (t == T - 1) Store(m, a.hT + b * H + u0, h);
    if (a.zr != nullptr) {
      const int64_t row = a.d.Row(b, t);
      Store(m, a.zr + row * 2 * H + u0, z);
      Store(m, a.zr + row * 2 * H + H + u0, rr);
      Store(m, a.hh + row * H + u0, hh);
      Store(m, a.mh + row * H + u0, acc[r][3]);
    }
  }
}

template <int MR, typename S>
JRNN_TARGET void GruFwdTile(const GruFwdArgs<S>& a, int64_t t, int64_t b0, int64_t p,
                            PanelShare share) {
  const int64_t T = a.d.T, H = a.d.H, F = a.F;
  Vec init[4], acc[MR][4];
  GruInit(a, p, init);
  SetRows(acc, init);
  int64_t ldh;
  const S* hprev = a.h.Prev(t, b0, &ldh);
  Accumulate<MR, 0, 3>(acc, a.x + a.d.Row(b0, t) * F, T * F,
                       PanelAhead<3>(a.wpack, p, F, share), F);
  Accumulate<MR, 1, 3>(acc, hprev, ldh, PanelAhead<3>(a.rpack, p, H, share), H);
  GruFwdRows<MR>(a, t, b0, p, acc, hprev, ldh);
}

#if defined(JRNN_AMX)
// The bfloat16 tile on AMX: m <= 16 rows.
JRNN_TARGET void AmxGruFwdTile(const GruFwdArgs<bf16>& a, int64_t t, int64_t b0, int m,
                               int64_t p) {
  Vec init[4];
  GruInit(a, p, init);
  AmxForwardTile<0, 3, 1, 3>(a, t, b0, m, p, init,
                             [&a, t, p](int64_t b, const Vec (&acc)[1][4], const bf16* hp,
                                        int64_t ldh) JRNN_TARGET {
                               GruFwdRows<1>(a, t, b, p, acc, hp, ldh);
                             });
}
#endif

// Every direction's recurrence (one GruFwdArgs each).
template <typename S>
void GruForward(ffi::ThreadPool& pool, const std::vector<GruFwdArgs<S>>& a) {
  const Dims& d = a[0].d;
  const int64_t panels = (d.H + 15) / 16, fmas = d.B * (a[0].F + d.H) * 3 * d.H;
#if defined(JRNN_AMX)
  if constexpr (!kIsF32<S>) {
    if (AmxEnabled()) {
      RecurDirections<kAmxRows, AmxSession>(
          pool, a, panels, fmas,
          [](int m, const GruFwdArgs<S>& k, int64_t t, int64_t b0, int64_t p, PanelShare) {
            AmxGruFwdTile(k, t, b0, m, p);
          });
      return;
    }
  }
#endif
  RecurDirections(pool, a, panels, fmas,
                  [](auto mr, const GruFwdArgs<S>& k, int64_t t, int64_t b0, int64_t p,
                     PanelShare share) { GruFwdTile<mr(), S>(k, t, b0, p, share); });
}

template <typename S>
struct GruBwdArgs {
  Dims d;
  const S* rtpack;
  const S *zr, *hh, *mh;
  const S *y, *h0, *dy;
  const float* dhT;
  S *gzr, *gax, *gah, *hprev;
  float* dh0;  // also carries dh·z between steps (all of dh past a masked step)
  const uint8_t* mask;  // (B, T), 0: a step that kept h; null: none
};

// The gate gradients of MR rows b0.. on panel p from their incoming dh (acc).
template <int MR, typename S>
JRNN_TARGET inline void GruBwdRows(const GruBwdArgs<S>& a, int64_t t, int64_t b0, int64_t p,
                                   const Mask (&m)[4], const Vec (&acc)[MR][4]) {
  const int64_t H = a.d.H;
  const int64_t u0 = 64 * p;
  const Vec one = Set1(1.0f), zero = Zero();
  for (int r = 0; r < MR; ++r) {
    const int64_t b = b0 + r;
    const bool masked = a.d.Masked(a.mask, b, t);
    for (int q = 0; q < 4; ++q) {
      const Mask mq = m[q];
      if (mq == 0) continue;
      const int64_t u = u0 + 16 * q;
      const int64_t row = a.d.Row(b, t);
      if (masked) {  // h passed through: dh passes on; no gate gradients
        Store(mq, a.gzr + row * 2 * H + u, zero);
        Store(mq, a.gzr + row * 2 * H + H + u, zero);
        Store(mq, a.gax + row * H + u, zero);
        Store(mq, a.gah + row * H + u, zero);
        Store(mq, a.dh0 + b * H + u, acc[r][q]);
        continue;
      }
      const Vec z = Load(mq, a.zr + row * 2 * H + u), rr = Load(mq, a.zr + row * 2 * H + H + u);
      const Vec hh = Load(mq, a.hh + row * H + u), mh = Load(mq, a.mh + row * H + u);
      const Vec hp =
          t == 0 ? Load(mq, a.h0 + b * H + u) : Load(mq, a.y + a.d.YRow(b, t - 1) + u);
      const Vec dh = acc[r][q];
      const Vec dz = Mul(dh, Sub(hp, hh));
      const Vec da = Mul(Mul(dh, Sub(one, z)),
                                      Fnmadd(hh, hh, one));
      const Vec dz_pre = Mul(dz, Mul(z, Sub(one, z)));
      const Vec dr_pre =
          Mul(Mul(da, mh), Mul(rr, Sub(one, rr)));
      // In place over zr, hh, mh: every gate above is loaded.
      Store(mq, a.gzr + row * 2 * H + u, dz_pre);
      Store(mq, a.gzr + row * 2 * H + H + u, dr_pre);
      Store(mq, a.gax + row * H + u, da);
      Store(mq, a.gah + row * H + u, Mul(da, rr));
      Store(mq, a.dh0 + b * H + u, Mul(dh, z));
    }
  }
}

// dh_t = dy_t + (t = T-1 ? dh_T : dh_{t+1} z_{t+1} carried in dh0) + gh_{t+1} Rᵀ
template <int MR, typename S>
JRNN_TARGET void GruBwdTile(const GruBwdArgs<S>& a, int64_t t, int64_t b0, int64_t p,
                            PanelShare share) {
  const int64_t T = a.d.T, H = a.d.H;
  Mask m[4];
  UnitMasks(H, p, m);
  Vec acc[MR][4];
  IncomingDh<MR, S>(acc, m, a.d, 2 * H, t, b0, p, share, a.dy, t == T - 1 ? a.dhT : a.dh0, a.gzr,
                    a.rtpack, a.gah, H);
  StorePrevH<MR, S>(a.d, t, b0, p, a.y, a.h0, a.hprev);
  GruBwdRows<MR>(a, t, b0, p, m, acc);
}

#if defined(JRNN_AMX)
// The bfloat16 tile on AMX: rows <= 16.
JRNN_TARGET void AmxGruBwdTile(const GruBwdArgs<bf16>& a, int64_t t, int64_t b0, int rows,
                               int64_t p) {
  const int64_t T = a.d.T, H = a.d.H;
  Mask m[4];
  UnitMasks(H, p, m);
  alignas(64) float dh[kAmxRows][64];
  AmxIncomingDh(dh, m, a.d, 2 * H, t, b0, rows, p, a.dy, t == T - 1 ? a.dhT : a.dh0, a.gzr,
                a.rtpack, a.gah, H);
  StorePrevH(a.d, t, b0, rows, p, a.y, a.h0, a.hprev);
  for (int r = 0; r < rows; ++r) {
    Vec acc[1][4];
    AmxRow(dh, r, acc);
    GruBwdRows<1>(a, t, b0 + r, p, m, acc);
  }
}
#endif

template <typename S>
void GruBackward(ffi::ThreadPool& pool, const GruBwdArgs<S>& a) {
  const int64_t panels = (a.d.H + 63) / 64, fmas = a.d.B * a.d.H * 3 * a.d.H;
#if defined(JRNN_AMX)
  if constexpr (!kIsF32<S>) {
    if (AmxEnabled()) {
      Recur<kAmxRows, AmxSession>(pool, a.d.B, a.d.T, panels, fmas, true,
                                  [&](int rows, int64_t t, int64_t b0, int64_t p, PanelShare) {
                                    AmxGruBwdTile(a, t, b0, rows, p);
                                  });
      return;
    }
  }
#endif
  Recur(pool, a.d.B, a.d.T, panels, fmas, true,
        [&](auto mr, int64_t t, int64_t b0, int64_t p, PanelShare share) {
          GruBwdTile<mr(), S>(a, t, b0, p, share);
        });
}

}  // namespace
}  // namespace JRNN_ISA
}  // namespace jrnn
#endif  // JRNN_X86

namespace jrnn {
namespace JRNN_ISA {
namespace {

ffi::Error GruFwdImpl(ffi::AnyBuffer x, ffi::AnyBuffer wpack, ffi::AnyBuffer bi,
                      ffi::AnyBuffer br, ffi::AnyBuffer rpack, ffi::AnyBuffer h0,
                      ffi::AnyBuffer mask, ffi::AnyBuffer y_in, ffi::Result<ffi::AnyBuffer> y,
                      ffi::Result<ffi::AnyBuffer> hT,
                      ffi::Result<ffi::AnyBuffer> zr, ffi::Result<ffi::AnyBuffer> hh,
                      ffi::Result<ffi::AnyBuffer> mh, ffi::ThreadPool pool, bool reverse,
                      int64_t slot) {
#if defined(JRNN_X86)
  PoisonFreshResults({x, wpack, bi, br, rpack, h0, mask, y_in}, {*y, *hT, *zr, *hh, *mh});
  ForwardDims d;
  JRNN_CHECK(ReadForwardDims("GRU", x.dimensions(), h0.dimensions(), y->dimensions(),
                             zr->element_count(), slot, &d));
  JRNN_CHECK(CheckYIn(y_in, y->untyped_data()));
  const int64_t B = d.B, T = d.T, F = d.F, H = d.H, D = d.D;
  const bool sequence = d.sequence, save = d.save;
  const uint8_t* steps = nullptr;
  JRNN_CHECK(ReadMask(mask, B, T, &steps));
  return ByStorage("GRU", x.element_type(), [&](auto s) -> ffi::Error {
    using S = decltype(s);
    constexpr ffi::DataType dt = kDataType<S>, f32 = ffi::DataType::F32;
    JRNN_CHECK(CheckTypes({{"wpack", wpack.element_type(), dt},
                           {"rpack", rpack.element_type(), dt},
                           {"h0", h0.element_type(), dt},
                           {"y", y->element_type(), dt},
                           {"hT", hT->element_type(), dt},
                           {"bi", bi.element_type(), f32},
                           {"br", br.element_type(), f32},
                           {"zr", zr->element_type(), dt},
                           {"hh", hh->element_type(), dt},
                           {"mh", mh->element_type(), dt}}));
    JRNN_CHECK(CheckPacked<S>("wpack", wpack.dimensions(), (H + 15) / 16, F, 48, D));
    JRNN_CHECK(CheckDims("bi", bi.dimensions(), {D, 3 * H}));
    JRNN_CHECK(CheckDims("br", br.dimensions(), {D, 3 * H}));
    JRNN_CHECK(CheckPacked<S>("rpack", rpack.dimensions(), (H + 15) / 16, H, 48, D));
    JRNN_CHECK(CheckDims("hT", hT->dimensions(), {D, B, H}));
    if (save) {
      JRNN_CHECK(CheckSaved("zr", zr->dimensions(), D, B, T, 2 * H));
      JRNN_CHECK(CheckSaved("hh", hh->dimensions(), D, B, T, H));
      JRNN_CHECK(CheckSaved("mh", mh->dimensions(), D, B, T, H));
    }
    if (B == 0 || H == 0) return ffi::Error::Success();
    if (T == 0) {
      std::copy(Data<S>(h0), Data<S>(h0) + D * B * H, Data<S>(hT));
      return ffi::Error::Success();
    }
    // Direction k runs backwards in time when reverse != (k odd) (as the LSTM's).
    std::vector<std::vector<S>> buffers(D);
    std::vector<GruFwdArgs<S>> a;
    for (int64_t k = 0; k < D; ++k) {
      const Dims dk{B, T, H, reverse != (k % 2 == 1)};
      const int64_t state = k * B * H, saved = k * B * T * H;
      a.push_back({dk,
                   F,
                   Data<S>(x),
                   Data<S>(wpack) + k * (wpack.element_count() / D),
                   Data<float>(bi) + k * 3 * H,
                   Data<float>(br) + k * 3 * H,
                   Data<S>(rpack) + k * (rpack.element_count() / D),
                   HSeq<S>::Make(sequence ? Data<S>(y) + (slot * D + k) * H : nullptr,
                                 Data<S>(h0) + state, dk, d.slots * D * H, &buffers[k]),
                   Data<S>(hT) + state,
                   save ? Data<S>(zr) + 2 * saved : nullptr,
                   save ? Data<S>(hh) + saved : nullptr,
                   save ? Data<S>(mh) + saved : nullptr,
                   steps});
    }
    if (save) AdviseHugePages(zr, hh, mh, y);
    GruForward(pool, a);
    return ffi::Error::Success();
  });
#else
  return Unsupported();
#endif
}

ffi::Error GruBwdImpl(ffi::AnyBuffer rtpack, ffi::AnyBuffer zr, ffi::AnyBuffer hh,
                      ffi::AnyBuffer mh, ffi::AnyBuffer y, ffi::AnyBuffer h0, ffi::AnyBuffer dy,
                      ffi::AnyBuffer dhT, ffi::AnyBuffer mask, ffi::Result<ffi::AnyBuffer> gzr,
                      ffi::Result<ffi::AnyBuffer> gax, ffi::Result<ffi::AnyBuffer> gah,
                      ffi::Result<ffi::AnyBuffer> hprev, ffi::Result<ffi::AnyBuffer> dh0,
                      ffi::ThreadPool pool, bool reverse, int64_t slot) {
#if defined(JRNN_X86)
  PoisonFreshResults({rtpack, zr, hh, mh, y, h0, dy, dhT, mask}, {*gzr, *gax, *gah, *hprev, *dh0});
  const auto hd = hh.dimensions();
  if (hd.size() != 3) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "jrnn native GRU: hh must be (B, T, H)");
  }
  const int64_t B = hd[0], T = hd[1], H = hd[2];
  const uint8_t* steps = nullptr;
  JRNN_CHECK(ReadMask(mask, B, T, &steps));
  return ByStorage("GRU", dy.element_type(), [&](auto s) -> ffi::Error {
    using S = decltype(s);
    constexpr ffi::DataType dt = kDataType<S>, f32 = ffi::DataType::F32;
    JRNN_CHECK(CheckTypes({{"rtpack", rtpack.element_type(), dt},
                           {"y", y.element_type(), dt},
                           {"h0", h0.element_type(), dt},
                           {"gzr", gzr->element_type(), dt},
                           {"gax", gax->element_type(), dt},
                           {"gah", gah->element_type(), dt},
                           {"hprev", hprev->element_type(), dt},
                           {"zr", zr.element_type(), dt},
                           {"hh", hh.element_type(), dt},
                           {"mh", mh.element_type(), dt},
                           {"dhT", dhT.element_type(), f32},
                           {"dh0", dh0->element_type(), f32}}));
    JRNN_CHECK(CheckPacked<S>("rtpack", rtpack.dimensions(), (H + 63) / 64, 3 * H, 64));
    int64_t slots;
    JRNN_CHECK(ReadSlot("dy", dy.dimensions(), B, T, H, slot, &slots));
    JRNN_CHECK(CheckDims("y", y.dimensions(), {B, T, slots * H}));
    JRNN_CHECK(CheckDims("h0", h0.dimensions(), {B, H}));
    JRNN_CHECK(CheckDims("dhT", dhT.dimensions(), {B, H}));
    JRNN_CHECK(CheckDims("zr", zr.dimensions(), {B, T, 2 * H}));
    JRNN_CHECK(CheckDims("mh", mh.dimensions(), {B, T, H}));
    JRNN_CHECK(CheckDims("gzr", gzr->dimensions(), {B, T, 2 * H}));
    JRNN_CHECK(CheckDims("gax", gax->dimensions(), {B, T, H}));
    JRNN_CHECK(CheckDims("gah", gah->dimensions(), {B, T, H}));
    JRNN_CHECK(CheckDims("hprev", hprev->dimensions(), {B, T, H}));
    JRNN_CHECK(CheckDims("dh0", dh0->dimensions(), {B, H}));
    if (B == 0 || H == 0) return ffi::Error::Success();
    if (T == 0) {
      std::copy(Data<float>(dhT), Data<float>(dhT) + B * H, Data<float>(dh0));
      return ffi::Error::Success();
    }
    GruBwdArgs<S> a{{B, T, H, reverse, slots * H}, Data<S>(rtpack), Data<S>(zr), Data<S>(hh),
                    Data<S>(mh), Data<S>(y) + slot * H, Data<S>(h0), Data<S>(dy) + slot * H,
                    Data<float>(dhT), Data<S>(gzr),  Data<S>(gax),     Data<S>(gah),
                    Data<S>(hprev), Data<float>(dh0), steps};
    AdviseHugePagesUnlessOverDy(slots, hprev);
    GruBackward(pool, a);
    return ffi::Error::Success();
  });
#else
  return Unsupported();
#endif
}

}  // namespace
}  // namespace JRNN_ISA
}  // namespace jrnn

XLA_FFI_DEFINE_HANDLER_SYMBOL(JRNN_SYMBOL(jrnn_gru_fwd), jrnn::JRNN_ISA::GruFwdImpl,
                              (jrnn::AnyBinding<8, 5>().Attr<bool>("reverse").Attr<int64_t>("slot")));

XLA_FFI_DEFINE_HANDLER_SYMBOL(JRNN_SYMBOL(jrnn_gru_bwd), jrnn::JRNN_ISA::GruBwdImpl,
                              (jrnn::AnyBinding<9, 5>().Attr<bool>("reverse").Attr<int64_t>("slot")));
