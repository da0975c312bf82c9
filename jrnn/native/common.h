// Shared pieces of jrnn's native CPU recurrences (lstm.cc, gru.cc, simple.cc,
// conv_lstm.cc): a 16-lane vector layer (AVX-512, or AVX2 + FMA), the gate maths on it,
// the register-tile GEMM, and the driver that runs tiles over time on XLA's thread pool.
//
// Every kernel computes, per (block of up to kMaxRows batch rows, panel of units), the
// gate pre-activations of one step in registers from weights packed once per call
// (panels of 16 units x 4 blocks = 64 columns, or 64 units for the transposed recurrent
// kernel of the backward pass), then applies the cell's gate math there: neither x W nor
// z reaches memory, so a forward pass allocates only what it returns (XLA's CPU runtime
// maps large temporaries afresh on every call, and their page faults cost as much as the
// arithmetic).
#ifndef JRNN_NATIVE_COMMON_H_
#define JRNN_NATIVE_COMMON_H_

#include <algorithm>
#include <atomic>
#include <cstring>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>  // madvise: transparent huge pages (Linux only)
#include <unistd.h>    // sysconf: the L2 cache's size
#endif

#include "xla/ffi/api/ffi.h"

#if defined(__x86_64__) || defined(_M_X64)
#define JRNN_X86 1
#include <immintrin.h>
#endif

// ------------------------------------------------------------------ instruction sets
// Every kernel file is compiled twice (setup.py): as itself for AVX-512, and through its
// *_avx2.cc twin, which defines JRNN_AVX2, for AVX2 + FMA. Each build keeps its code in
// its own namespace (jrnn::avx512, jrnn::avx2: the two builds' inline functions never
// meet in the linker) and exports its FFI handlers with that suffix (jrnn_lstm_fwd_avx512,
// jrnn_lstm_fwd_avx2); jrnn/native/__init__.py registers the set this CPU runs
// (jrnn_native_isa(), common.cc) under the plain target names.
#if defined(JRNN_AVX2)
#define JRNN_ISA avx2
#else
#define JRNN_ISA avx512
#endif
#define JRNN_PASTE_(a, b) a##_##b
#define JRNN_PASTE(a, b) JRNN_PASTE_(a, b)
#define JRNN_SYMBOL(name) JRNN_PASTE(name, JRNN_ISA)

namespace ffi = xla::ffi;

namespace jrnn {

ffi::Error CheckDims(const char* what, ffi::AnyBuffer::Dimensions dims,
                     std::initializer_list<int64_t> want);

#define JRNN_CHECK(expr)             \
  do {                               \
    ffi::Error err_ = (expr);        \
    if (err_.failure()) return err_; \
  } while (0)

// Ffi::Bind() for NArgs buffer arguments and NRets results, all of type Buf (every kernel
// uses ffi::AnyBuffer and checks dtypes itself: float32 or bfloat16 storage), and
// XLA's intra-op thread pool: the signature of every jrnn kernel.
// (Bindings are neither copyable nor movable: every step passes a prvalue along.)
template <typename Buf, int N, typename B>
auto WithArgs(B binding) {
  static_assert(N >= 1);
  if constexpr (N == 1) {
    return std::move(binding).template Arg<Buf>();
  } else {
    return WithArgs<Buf, N - 1>(std::move(binding).template Arg<Buf>());
  }
}
template <typename Buf, int N, typename B>
auto WithRets(B binding) {
  static_assert(N >= 1);
  if constexpr (N == 1) {
    return std::move(binding).template Ret<Buf>();
  } else {
    return WithRets<Buf, N - 1>(std::move(binding).template Ret<Buf>());
  }
}
template <typename Buf, int NArgs, int NRets>
auto Binding() {
  return WithRets<Buf, NRets>(WithArgs<Buf, NArgs>(ffi::Ffi::Bind())).template Ctx<ffi::ThreadPool>();
}
template <int NArgs, int NRets>
auto AnyBinding() {
  return Binding<ffi::AnyBuffer, NArgs, NRets>();
}

// Storage types of a forward kernel's inputs, outputs and weights: float32, or bfloat16
// (its bits; products accumulate in float32 and gate maths runs in float32).
using bf16 = uint16_t;
template <typename S>
constexpr bool kIsF32 = std::is_same_v<S, float>;
template <typename S>
constexpr ffi::DataType kDataType = kIsF32<S> ? ffi::DataType::F32 : ffi::DataType::BF16;

// Rows of a packed weight panel for K input rows: K for float32; bfloat16 panels hold
// pairs of rows interleaved (vdpbf16ps), K rounded up to even.
template <typename S>
constexpr int64_t PackedRows(int64_t K) {
  return kIsF32<S> ? K : K + (K & 1);
}

// A packed weight of P panels of C columns over K input rows: (P, K, C) for float32,
// (P, ceil(K/2), 2C) for bfloat16 (element [kk][2c + e] = row 2kk + e, column c).
template <typename S>
ffi::Error CheckPacked(const char* what, ffi::AnyBuffer::Dimensions dims, int64_t P, int64_t K,
                       int64_t C) {
  return kIsF32<S> ? CheckDims(what, dims, {P, K, C}) : CheckDims(what, dims, {P, (K + 1) / 2, 2 * C});
}
// The same, one panel set per direction: (D, P, ...).
template <typename S>
ffi::Error CheckPacked(const char* what, ffi::AnyBuffer::Dimensions dims, int64_t P, int64_t K,
                       int64_t C, int64_t D) {
  return kIsF32<S> ? CheckDims(what, dims, {D, P, K, C})
                   : CheckDims(what, dims, {D, P, (K + 1) / 2, 2 * C});
}

// A forward kernel's saved (B, T, width) array of each of D directions: (D, B, T, width),
// or (B, T, width) when D = 1 (the training path's: its backward kernel aliases the array,
// which XLA does without a copy only for a custom call's own result, not a reshape of it).
inline ffi::Error CheckSaved(const char* what, ffi::AnyBuffer::Dimensions dims, int64_t D,
                             int64_t B, int64_t T, int64_t width) {
  if (D == 1 && dims.size() == 3) return CheckDims(what, dims, {B, T, width});
  return CheckDims(what, dims, {D, B, T, width});
}

// Whether this CPU runs bfloat16 dot products (AVX512_BF16).
bool Bf16Supported();
// Whether the bfloat16 forward and backward tiles use AMX (see AmxSession): the CPU has AMX-TILE and
// AMX-BF16, Linux grants this process the tile data state, and JRNN_NATIVE_AMX is not 0
// (read at every call, so a process can compare both paths).
bool AmxEnabled();

// Checks buffer `what` has dtype want.
ffi::Error CheckType(const char* what, ffi::DataType got, ffi::DataType want);
struct TypeCheck {
  const char* what;
  ffi::DataType got, want;
};
inline ffi::Error CheckTypes(std::initializer_list<TypeCheck> checks) {
  for (const TypeCheck& c : checks) JRNN_CHECK(CheckType(c.what, c.got, c.want));
  return ffi::Error::Success();
}

template <typename S>
S* Data(ffi::AnyBuffer b) {
  return reinterpret_cast<S*>(b.untyped_data());
}
template <typename S>
S* Data(ffi::Result<ffi::AnyBuffer>& b) {
  return reinterpret_cast<S*>(b->untyped_data());
}

// A backward kernel's dh carry `dhc` (B, H, float32), which returns the dh that reaches h0
// directly (past masked first steps): dhT when `carries` (a mask, or T = 0), else zeros.
inline float* StartCarry(ffi::Result<ffi::AnyBuffer>& dhc, ffi::AnyBuffer dhT, bool carries) {
  float* out = Data<float>(dhc);
  const float* from = Data<float>(dhT);
  const size_t n = dhT.element_count();
  if (carries) {
    std::copy(from, from + n, out);
  } else {
    std::fill(out, out + n, 0.0f);
  }
  return out;
}

// The sizes of a forward call, read from x (B, T, F) and h0 (B, H), with the output
// sequence y checked against them: (B, T, H), or empty when the caller does not want it.
// saved: the element count of what the call saves for the backward pass (0: nothing),
// which needs y.
struct ForwardDims {
  int64_t B, T, F, H;
  bool sequence, save;
  int64_t D;      // directions
  int64_t slots;  // y holds `slots` calls' outputs side by side (ReadSlot)
};
// The sizes of a forward call from x (B, T, F), h0 (D, B, H: D independent recurrences in
// one call, a bidirectional layer's two, or one), y ((B, T, slots D H), or (0,) when the
// sequence is not wanted), the element count of a saved array (0 when not saving), and
// the call's slot of y (ReadSlot).
ffi::Error ReadForwardDims(const char* cell, ffi::AnyBuffer::Dimensions x,
                           ffi::AnyBuffer::Dimensions h0, ffi::AnyBuffer::Dimensions y,
                           size_t saved, int64_t slot, ForwardDims* out);

// A call's slot of its (B, T, W) sequence arrays: W = slots * width, and the call reads or
// writes columns slot * width .. slot * width + width - 1. A Bidirectional layer's training
// step runs its two directions as two calls (each backward kernel overwrites its own
// direction's saved arrays in place), but keeps one y and one dy, (B, T, 2H): direction k
// writes and reads slot k, the second forward call writing into the first's y (y_in, which
// XLA aliases to y). Sets *slots.
ffi::Error ReadSlot(const char* name, ffi::AnyBuffer::Dimensions dims, int64_t B, int64_t T,
                    int64_t width, int64_t slot, int64_t* slots);

// A forward call's y_in: (0,), or the buffer of y (its data pointer) itself: the call writes
// its slot of an array an earlier call began (XLA aliases the two).
ffi::Error CheckYIn(ffi::AnyBuffer y_in, const void* y);

// A call's step mask: (B, T) uint8, where 0 marks a step that keeps the state (Keras'
// masking; the kernels' y then holds the kept h), or (0,) for none (*out = null).
ffi::Error ReadMask(ffi::AnyBuffer mask, int64_t B, int64_t T, const uint8_t** out);

inline ffi::Error Unsupported() {
  return ffi::Error(ffi::ErrorCode::kUnimplemented,
                    "jrnn native kernels need x86-64 with AVX-512 or AVX2 and FMA");
}

}  // namespace jrnn

#if defined(JRNN_X86)
namespace jrnn {
namespace JRNN_ISA {

// ------------------------------------------------------------------ vector layer
// A Vec holds 16 float32 lanes: one zmm register (AVX-512) or two ymm (AVX2). The gate
// maths, loads and stores below are written once against it; only the GEMM
// (Accumulate) is tiled per instruction set. A Mask has one bit per lane (lane i: bit i).
#if defined(JRNN_AVX2)
#define JRNN_TARGET __attribute__((target("avx2,fma")))
constexpr bool kBf16Kernels = false;  // no bfloat16 dot product below AVX512_BF16
struct Vec {
  __m256 lo, hi;  // lanes 0-7, 8-15
};
using Mask = uint16_t;

#define JRNN_VEC1(name, op) \
  JRNN_TARGET inline Vec name(Vec a) { return {op(a.lo), op(a.hi)}; }
#define JRNN_VEC2(name, op) \
  JRNN_TARGET inline Vec name(Vec a, Vec b) { return {op(a.lo, b.lo), op(a.hi, b.hi)}; }
#define JRNN_VEC3(name, op) \
  JRNN_TARGET inline Vec name(Vec a, Vec b, Vec c) { return {op(a.lo, b.lo, c.lo), op(a.hi, b.hi, c.hi)}; }
JRNN_TARGET inline Vec Set1(float v) { return {_mm256_set1_ps(v), _mm256_set1_ps(v)}; }
JRNN_TARGET inline Vec Zero() { return {_mm256_setzero_ps(), _mm256_setzero_ps()}; }
JRNN_VEC2(Add, _mm256_add_ps)
JRNN_VEC2(Sub, _mm256_sub_ps)
JRNN_VEC2(Mul, _mm256_mul_ps)
JRNN_VEC2(Div, _mm256_div_ps)
JRNN_VEC2(Min, _mm256_min_ps)
JRNN_VEC2(Max, _mm256_max_ps)
JRNN_VEC2(Or, _mm256_or_ps)
JRNN_VEC2(And, _mm256_and_ps)
JRNN_VEC3(Fmadd, _mm256_fmadd_ps)
JRNN_VEC3(Fnmadd, _mm256_fnmadd_ps)
JRNN_TARGET inline __m256 Abs8(__m256 a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
JRNN_VEC1(Abs, Abs8)
JRNN_TARGET inline __m256 Round8(__m256 a) {
  return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
JRNN_VEC1(RoundNearest, Round8)
// p 2^n for integral n in [-126, 128] (Exp's range), as vscalefps: in two exact halves,
// each a power of two that float32 represents, so only the last product rounds.
JRNN_TARGET inline __m256 Pow2(__m256i e) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e, _mm256_set1_epi32(127)), 23));
}
JRNN_TARGET inline __m256 Scale8(__m256 p, __m256 n) {
  const __m256i k = _mm256_cvtps_epi32(n), k1 = _mm256_srai_epi32(k, 1);
  return _mm256_mul_ps(_mm256_mul_ps(p, Pow2(k1)), Pow2(_mm256_sub_epi32(k, k1)));
}
JRNN_VEC2(ScaleByPow2, Scale8)
// a < bound ? if_less : otherwise, per lane.
JRNN_TARGET inline Vec SelectLess(Vec a, Vec bound, Vec if_less, Vec otherwise) {
  return {_mm256_blendv_ps(otherwise.lo, if_less.lo, _mm256_cmp_ps(a.lo, bound.lo, _CMP_LT_OQ)),
          _mm256_blendv_ps(otherwise.hi, if_less.hi, _mm256_cmp_ps(a.hi, bound.hi, _CMP_LT_OQ))};
}
#undef JRNN_VEC1
#undef JRNN_VEC2
#undef JRNN_VEC3

// The lanes of bits 0-7 of m as a vmaskmov mask.
JRNN_TARGET inline __m256i LaneMask(unsigned m) {
  const __m256i bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  return _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(static_cast<int>(m)), bits), bits);
}
JRNN_TARGET inline Vec LoadU(const float* p) { return {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; }
JRNN_TARGET inline void StoreU(float* p, Vec v) {
  _mm256_storeu_ps(p, v.lo);
  _mm256_storeu_ps(p + 8, v.hi);
}
// Masked-off lanes read as zero and are never touched in memory (no fault past an array).
JRNN_TARGET inline Vec Load(Mask m, const float* p) {
  if (m == 0xFFFF) return LoadU(p);
  return {_mm256_maskload_ps(p, LaneMask(m & 0xFFu)), _mm256_maskload_ps(p + 8, LaneMask(m >> 8))};
}
JRNN_TARGET inline void Store(Mask m, float* p, Vec v) {
  if (m == 0xFFFF) return StoreU(p, v);
  _mm256_maskstore_ps(p, LaneMask(m & 0xFFu), v.lo);
  _mm256_maskstore_ps(p + 8, LaneMask(m >> 8), v.hi);
}
#else  // AVX-512
// bfloat16 instructions appear only where bf16 intrinsics are written (the bfloat16
// instantiations), which run only when Bf16Supported().
#define JRNN_TARGET __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx512bf16,fma")))
constexpr bool kBf16Kernels = true;
using Vec = __m512;
using Mask = __mmask16;

JRNN_TARGET inline Vec Set1(float v) { return _mm512_set1_ps(v); }
JRNN_TARGET inline Vec Zero() { return _mm512_setzero_ps(); }
JRNN_TARGET inline Vec Add(Vec a, Vec b) { return _mm512_add_ps(a, b); }
JRNN_TARGET inline Vec Sub(Vec a, Vec b) { return _mm512_sub_ps(a, b); }
JRNN_TARGET inline Vec Mul(Vec a, Vec b) { return _mm512_mul_ps(a, b); }
JRNN_TARGET inline Vec Div(Vec a, Vec b) { return _mm512_div_ps(a, b); }
JRNN_TARGET inline Vec Min(Vec a, Vec b) { return _mm512_min_ps(a, b); }
JRNN_TARGET inline Vec Max(Vec a, Vec b) { return _mm512_max_ps(a, b); }
JRNN_TARGET inline Vec Or(Vec a, Vec b) { return _mm512_or_ps(a, b); }
JRNN_TARGET inline Vec And(Vec a, Vec b) { return _mm512_and_ps(a, b); }
JRNN_TARGET inline Vec Fmadd(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
JRNN_TARGET inline Vec Fnmadd(Vec a, Vec b, Vec c) { return _mm512_fnmadd_ps(a, b, c); }
JRNN_TARGET inline Vec Abs(Vec a) { return _mm512_abs_ps(a); }
JRNN_TARGET inline Vec RoundNearest(Vec a) {
  return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
JRNN_TARGET inline Vec ScaleByPow2(Vec p, Vec n) { return _mm512_scalef_ps(p, n); }
JRNN_TARGET inline Vec SelectLess(Vec a, Vec bound, Vec if_less, Vec otherwise) {
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, bound, _CMP_LT_OQ), otherwise, if_less);
}
JRNN_TARGET inline Vec LoadU(const float* p) { return _mm512_loadu_ps(p); }
JRNN_TARGET inline void StoreU(float* p, Vec v) { _mm512_storeu_ps(p, v); }
JRNN_TARGET inline Vec Load(Mask m, const float* p) { return _mm512_maskz_loadu_ps(m, p); }
JRNN_TARGET inline void Store(Mask m, float* p, Vec v) { _mm512_mask_storeu_ps(p, m, v); }
// bfloat16 <-> float32: widening is exact; narrowing rounds to nearest even.
JRNN_TARGET inline Vec Load(Mask m, const bf16* p) {
  const __m512i wide = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
}
JRNN_TARGET inline void Store(Mask m, bf16* p, Vec v) {
  _mm256_mask_storeu_epi16(p, m, reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(v)));
}
#endif

// ------------------------------------------------------------------ gate maths
JRNN_TARGET inline Vec Exp(Vec x) {  // Cephes expf, ~1 ulp
  // max/min return their second operand when one is NaN: NaN stays NaN, as in XLA.
  x = Min(Set1(88.3762626f), Max(Set1(-87.3365447f), x));
  const Vec n = RoundNearest(Mul(x, Set1(1.44269504088896341f)));
  Vec r = Fnmadd(n, Set1(0.693359375f), x);
  r = Fnmadd(n, Set1(-2.12194440e-4f), r);
  Vec p = Set1(1.9875691500e-4f);
  p = Fmadd(p, r, Set1(1.3981999507e-3f));
  p = Fmadd(p, r, Set1(8.3334519073e-3f));
  p = Fmadd(p, r, Set1(4.1665795894e-2f));
  p = Fmadd(p, r, Set1(1.6666665459e-1f));
  p = Fmadd(p, r, Set1(5.0000001201e-1f));
  p = Fmadd(p, Mul(r, r), Add(r, Set1(1.0f)));
  return ScaleByPow2(p, n);
}

JRNN_TARGET inline Vec Sigmoid(Vec x) {
  const Vec one = Set1(1.0f);
  return Div(one, Add(one, Exp(Sub(Zero(), x))));
}

JRNN_TARGET inline Vec Tanh(Vec x) {  // Cephes tanhf: odd polynomial below 0.625
  const Vec ax = Abs(x);
  const Vec z = Mul(x, x);
  Vec p = Set1(-5.70498872745e-3f);
  p = Fmadd(p, z, Set1(2.06390887954e-2f));
  p = Fmadd(p, z, Set1(-5.37397155531e-2f));
  p = Fmadd(p, z, Set1(1.33314422036e-1f));
  p = Fmadd(p, z, Set1(-3.33332819422e-1f));
  const Vec small = Fmadd(Mul(p, z), x, x);
  const Vec one = Set1(1.0f);
  const Vec e = Exp(Add(ax, ax));
  Vec big = Sub(one, Div(Set1(2.0f), Add(e, one)));
  big = Or(big, And(x, Set1(-0.0f)));  // copy the sign
  return SelectLess(ax, Set1(0.625f), small, big);
}

inline Mask TailMask(int remaining) {
  return remaining >= 16 ? static_cast<Mask>(0xFFFF)
                         : static_cast<Mask>((1u << std::max(remaining, 0)) - 1u);
}

// Calls f(S{}) for the storage type S of dtype (float32 or bfloat16) and returns its
// result; any other dtype, or bfloat16 on a CPU without AVX512_BF16 (or in the AVX2
// build), is an error.
template <typename Fn>
ffi::Error ByStorage(const char* cell, ffi::DataType dtype, Fn&& f) {
  if (dtype == ffi::DataType::F32) return f(float{});
  if (dtype == ffi::DataType::BF16) {
    if constexpr (kBf16Kernels) {
      if (Bf16Supported()) return f(bf16{});
    }
    return ffi::Error(ffi::ErrorCode::kUnimplemented,
                      std::string("jrnn native ") + cell + ": bfloat16 needs AVX512_BF16");
  }
  return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                    std::string("jrnn native ") + cell + ": x must be float32 or bfloat16");
}

// Rows per register tile: AVX-512 keeps 6 rows x 4 zmm accumulators; AVX2 runs the same
// rows as 6 x 2 ymm per 16 columns (Accumulate).
constexpr int kMaxRows = 6;

// The time axis of a recurrence: step s (0 .. T-1, in the order the recurrence runs)
// reads and writes the arrays' time index s, or T-1-s when `reverse` (a backwards layer
// over its inputs in their own order: Keras' go_backwards without flipping x and y).
// Backward kernels run the steps last to first and index the same way.
struct Dims {
  int64_t B, T, H;
  bool reverse = false;
  // The row stride of the backward kernels' y and dy (0: H). A Bidirectional layer's
  // training step keeps both directions' in one (B, T, 2H) array each; a direction's
  // kernels read its half (the pointers offset by its slot: ReadSlot).
  int64_t ldy = 0;
  // Row (b, time index of step s) of a (B, T, ·) array.
  int64_t Row(int64_t b, int64_t s) const { return b * T + (reverse ? T - 1 - s : s); }
  // Offset of row (b, step s) in y or dy (the backward kernels').
  int64_t YRow(int64_t b, int64_t s) const { return Row(b, s) * (ldy > 0 ? ldy : H); }
  // Whether step s of row b is masked (keeps the state) under mask (B, T) (null: none).
  bool Masked(const uint8_t* mask, int64_t b, int64_t s) const {
    return mask != nullptr && mask[Row(b, s)] == 0;
  }
};

// The hidden-state sequence of a forward pass: h of step s lives in the output y (B, T,
// ld), at columns 0..H-1 of y's pointer (a fused bidirectional call offsets y by d H and
// sets ld = D H), or, when the caller does not want the sequence (inference without
// return_sequences), in two (B, H) buffers used alternately (a step reads one and writes
// the other; threads split a step by rows or synchronise between steps, so neither is
// overwritten while read).
template <typename S>
struct HSeq {
  S* y;    // (B, T, ld) or null
  S* buf;  // (2, B, H) when y is null
  const S* h0;
  Dims d;
  int64_t ld;
  // h of the step before s (h0 at s = 0) in row b, and the stride between rows.
  const S* Prev(int64_t s, int64_t b, int64_t* stride) const {
    if (s == 0) {
      *stride = d.H;
      return h0 + b * d.H;
    }
    *stride = y != nullptr ? d.T * ld : d.H;
    return y != nullptr ? y + d.Row(b, s - 1) * ld : buf + ((s - 1) & 1) * d.B * d.H + b * d.H;
  }
  S* Out(int64_t s, int64_t b) const {
    return y != nullptr ? y + d.Row(b, s) * ld : buf + (s & 1) * d.B * d.H + b * d.H;
  }
  // Over y, or, when y is null, over two buffers held in *storage.
  static HSeq Make(S* y, const S* h0, const Dims& d, int64_t ld, std::vector<S>* storage) {
    if (y == nullptr) storage->assign(2 * d.B * d.H, S{});
    return HSeq{y, y == nullptr ? storage->data() : nullptr, h0, d, ld};
  }
};

// A packed weight panel: NQ blocks of 16 columns, element (k, 16 q + c) at
// w[q ldq + k ldk + c] (float32; a bfloat16 panel interleaves pairs of rows, ldk 16 NQ).
// jrnn/native/__init__.py (_weights) packs weights as each build reads them best
// (PackedPanel): AVX2 runs each block's K loop on its own, so each block's rows are
// contiguous (ldk 16, ldq 16 K); with rows of 16 NQ floats (AVX-512's layout: one row per
// k), each AVX2 K loop read 64 bytes of every 256, used a quarter of the L1 sets, and the
// GEMM-bound forwards ran 5-12% slower.
//
// A panel may also name cache lines that the tile reading it prefetches into L2 as it goes
// (`ahead`: PanelAhead), a share of the weights the next tile of its thread reads: line i
// at k = 4 i, for k < stop.
struct L2Lines {
  const char* lines = nullptr;
  int64_t stop = 0;
};
template <typename S>
struct Panel {
  const S* w;
  int64_t ldk, ldq;
  L2Lines ahead = {};
  Panel From(int64_t k0) const { return {w + k0 * ldk, ldk, ldq}; }  // rows k0, k0 + 1, ..
};
// Panel p of a packed weight (panels of NQ blocks over K rows each).
template <int NQ, typename S>
JRNN_TARGET inline Panel<S> PackedPanel(const S* packed, int64_t p, int64_t K) {
  const S* w = packed + p * PackedRows<S>(K) * 16 * NQ;
#if defined(JRNN_AVX2)
  if constexpr (kIsF32<S>) return {w, 16, 16 * K};
#endif
  return {w, 16 * NQ, 16};
}
// Which share of the next panel's weights a row block fetches (Recur): block j of the n
// that run on one panel in a row, n = 0 for none; `next` is the panel its thread reads
// after this one (panel 0 after the last, where the next step starts).
struct PanelShare {
  int64_t j = 0, n = 0, next = 0;
};

// Panel p of a packed float32 weight, which also prefetches into L2 share j of n of panel
// share.next. A thread runs every row
// block of its chunk on one panel before the next (Recur), so the next panel is what it
// reads next; where its panels are more than L2 holds (the LSTM's W and R at 256 inputs
// and 512 units are 6 MiB, L2 2 MiB a core on the Intel benchmark machine), that panel
// would otherwise come from L3 on demand at the first row block. The n row blocks each
// fetch their n-th while their own K loop runs. At the throughput shape (256, 50, 256,
// 512) this and one chunk per thread (Recur) took the LSTM forward from 138-141 to
// 131-133 ms and the GRU's from 106-108 to 99-100 (fastest of 9 calls; 3 processes each,
// alternating). AVX-512 tiles of three or more rows only (the others leave `ahead`
// unread); bfloat16 panels stay as PackedPanel gives them.
template <int NQ>
JRNN_TARGET inline Panel<float> PanelAhead(const float* packed, int64_t p, int64_t K,
                                           PanelShare share) {
  Panel<float> w = PackedPanel<NQ>(packed, p, K);
  if (share.n > 0) {
    const float* next = PackedPanel<NQ>(packed, share.next, K).w;
    const int64_t lines = K * NQ;  // K rows of 16 NQ floats: NQ lines each
    const int64_t lo = lines * share.j / share.n, hi = lines * (share.j + 1) / share.n;
    // One line every 4 k: a share beyond K / 4 lines (few row blocks) is fetched in part.
    w.ahead = {reinterpret_cast<const char*>(next) + 64 * lo, 4 * (hi - lo)};
  }
  return w;
}
template <int NQ>
inline Panel<bf16> PanelAhead(const bf16* packed, int64_t p, int64_t K, PanelShare) {
  return PackedPanel<NQ>(packed, p, K);
}

// A panel packed with rows of 16 NQ floats whatever the build (conv_lstm.cc's dz panels).
template <int NQ>
inline Panel<float> RowPanel(const float* w) {
  return {w, 16 * NQ, 16};
}

// acc[r][Q0 + q] += sum_k a[r][k] * w(k, 16 q .. 16 q + 15), q < NQ, k < K: the
// register-tile GEMM (a packed panel of NQ x 16 columns, rows K) over one pointer per row
// (rows gathered from anywhere, e.g. the pixels a convolution's tap reads).
#if defined(JRNN_AVX2)
// AVX2 has 16 ymm registers: a tile's 6 rows x 4 Vecs (48 ymm) cannot stay in them, so
// each 16-column block q runs the K loop on its own 6 x 2 ymm accumulators (+ 2 weight
// registers and one broadcast: the classic 6 x 16 AVX2 micro-kernel), over the same
// packed panel; the other blocks wait outside the loop. Tiles of one or two rows (batch 1
// or 2) run 4 / MR blocks per K loop instead: 8 independent FMA chains hide the FMA
// latency, where one row's 2 chains per block would leave the FMA units idle 3 cycles in
// 4. Every sum still runs over k in order, so the grouping changes no result.
//
// AccumulateGroup: blocks Q .. Q + G - 1 (G MR = sizeof...(I) chains) over one K loop;
// chain i = g MR + r accumulates row r's block Q + g. The chains are indexed by template
// constants only (a fold over I): under loops, a [G][MR] array stayed on the stack.
template <int MR, int Q0, int Q, int... I>
JRNN_TARGET inline void AccumulateGroup(Vec (&acc)[MR][4], const float* const (&a)[MR],
                                        const Panel<float>& w, int64_t K,
                                        std::integer_sequence<int, I...>) {
  __m256 lo[] = {acc[I % MR][Q0 + Q + I / MR].lo...};
  __m256 hi[] = {acc[I % MR][Q0 + Q + I / MR].hi...};
  const float* wk = w.w + Q * w.ldq;
  const int64_t ldq = w.ldq;
  for (int64_t k = 0; k < K; ++k, wk += w.ldk) {
    ((lo[I] = _mm256_fmadd_ps(_mm256_broadcast_ss(a[I % MR] + k),
                              _mm256_loadu_ps(wk + (I / MR) * ldq), lo[I]),
      hi[I] = _mm256_fmadd_ps(_mm256_broadcast_ss(a[I % MR] + k),
                              _mm256_loadu_ps(wk + (I / MR) * ldq + 8), hi[I])),
     ...);
  }
  ((acc[I % MR][Q0 + Q + I / MR] = Vec{lo[I], hi[I]}), ...);
}
// A grouped K loop out of line: inlined into a forward tile, GCC kept 4 of its 8 chains
// on the stack (a store and a reload per k; the batch-1 SimpleRNN forward ran 15% slower).
template <int MR, int Q0, int Q, int... I>
JRNN_TARGET __attribute__((noinline)) void AccumulateGroupApart(
    Vec (&acc)[MR][4], const float* const (&a)[MR], const Panel<float>& w, int64_t K,
    std::integer_sequence<int, I...> chains) {
  AccumulateGroup<MR, Q0, Q>(acc, a, w, K, chains);
}
// Blocks Q .. NQ - 1 of a one- or two-row tile, 4 / MR blocks per K loop.
template <int MR, int Q0, int NQ, int Q>
JRNN_TARGET inline void AccumulateGroups(Vec (&acc)[MR][4], const float* const (&a)[MR],
                                         const Panel<float>& w, int64_t K) {
  if constexpr (Q < NQ) {
    constexpr int G = std::min(4 / MR, NQ - Q);
    AccumulateGroupApart<MR, Q0, Q>(acc, a, w, K, std::make_integer_sequence<int, G * MR>{});
    AccumulateGroups<MR, Q0, NQ, Q + G>(acc, a, w, K);
  }
}
template <int MR, int Q0, int NQ>
JRNN_TARGET inline void AccumulateRows(Vec (&acc)[MR][4], const float* const (&a)[MR],
                                       const Panel<float>& w, int64_t K) {
  static_assert(Q0 + NQ <= 4, "four accumulators per row");
  if constexpr (MR <= 2) {
    AccumulateGroups<MR, Q0, NQ, 0>(acc, a, w, K);
  } else {
    for (int q = 0; q < NQ; ++q) {
      __m256 lo[MR], hi[MR];
      for (int r = 0; r < MR; ++r) lo[r] = acc[r][Q0 + q].lo, hi[r] = acc[r][Q0 + q].hi;
      const float* wk = w.w + q * w.ldq;
      for (int64_t k = 0; k < K; ++k, wk += w.ldk) {
        const __m256 w0 = _mm256_loadu_ps(wk), w1 = _mm256_loadu_ps(wk + 8);
        for (int r = 0; r < MR; ++r) {
          const __m256 v = _mm256_broadcast_ss(a[r] + k);
          lo[r] = _mm256_fmadd_ps(v, w0, lo[r]);
          hi[r] = _mm256_fmadd_ps(v, w1, hi[r]);
        }
      }
      for (int r = 0; r < MR; ++r) acc[r][Q0 + q] = Vec{lo[r], hi[r]};
    }
  }
}
#else
// The AVX-512 tile reads 256 bytes of weights per k for 24 FMAs (12 cycles at peak), from
// L2 (a panel of the typical LSTM is 96 KiB), which on the Intel benchmark machine feeds
// ~24 bytes a cycle: the tiles ran at ~60% of the FMA peak. Prefetching each row's lines
// kPrefetchRows rows ahead into L1 took the typical LSTM forward from 20.7-21.3 to
// 19.1-19.9 ms, its training step from 68.7-72.0 to 63.4-66.9 and GRU's from 56.5-61.1
// to 50.3-55.8 (with dense.cc's weight-gradient tiles, AccumulateColumns). Tiles of one
// or two rows (batch 1 or 2) skip it: there every weight line feeds one or two FMAs, the
// tile is bound by L2 bandwidth, and the extra load-port work made the batch-1 SimpleRNN
// and LSTM forwards 7-8% slower.
constexpr int64_t kPrefetchRows = 8;
template <int NQ>
JRNN_TARGET inline void PrefetchRow(const float* w, int64_t ldq) {
  for (int q = 0; q < NQ; ++q) _mm_prefetch(reinterpret_cast<const char*>(w + q * ldq), _MM_HINT_T0);
}
template <int MR, int Q0, int NQ>
JRNN_TARGET inline void AccumulateRows(Vec (&acc)[MR][4], const float* const (&a)[MR],
                                       const Panel<float>& w, int64_t K) {
  static_assert(Q0 + NQ <= 4, "four accumulators per row");
  // Every float32 panel of this build has rows of 16 NQ floats (PackedPanel, RowPanel:
  // w.ldk = 16 NQ, w.ldq = 16). With the strides as constants the loop's weight addresses
  // are immediates, which leaves registers for the rows' pointers (read from w, with a
  // prefetch of PanelAhead's lines in the loop, GCC kept two of them on the stack). The
  // prefetching K loop is a loop of its own, 4 k per pass: a test in the one loop cost
  // the GRU (64, 100, 128, 256) forward 4%, with no lines to fetch.
  constexpr int64_t ldk = 16 * NQ, ldq = 16;
  auto row_k = [&](int64_t k) JRNN_TARGET {
    const float* wk = w.w + k * ldk;
    Vec wq[NQ];
    for (int q = 0; q < NQ; ++q) wq[q] = LoadU(wk + q * ldq);
    if constexpr (MR >= 3) PrefetchRow<NQ>(wk + kPrefetchRows * ldk, ldq);
    for (int r = 0; r < MR; ++r) {
      const Vec v = Set1(a[r][k]);
      for (int q = 0; q < NQ; ++q) acc[r][Q0 + q] = Fmadd(v, wq[q], acc[r][Q0 + q]);
    }
  };
  int64_t k = 0;
  if constexpr (MR >= 3) {  // PanelAhead's lines, one every 4 k, in a loop of their own
    const int64_t stop = std::min(K, w.ahead.stop) & ~int64_t{3};
    for (; k < stop; k += 4) {
      _mm_prefetch(w.ahead.lines + 16 * k, _MM_HINT_T1);
      row_k(k), row_k(k + 1), row_k(k + 2), row_k(k + 3);
    }
  }
  for (; k < K; ++k) row_k(k);
}
#endif

// The same GEMM over rows lda apart: a[r * lda + k].
template <int MR, int Q0, int NQ>
JRNN_TARGET inline void Accumulate(Vec (&acc)[MR][4], const float* a, int64_t lda,
                                   const Panel<float>& w, int64_t K) {
  const float* rows[MR];
  for (int r = 0; r < MR; ++r) rows[r] = a + r * lda;
  AccumulateRows<MR, Q0, NQ>(acc, rows, w, K);
}

// acc[r][q] += sum_k at[k kMaxRows + r] * w(k, 16 q .. 16 q + 15), k < K: the same register
// tile over a left operand packed as a (K, kMaxRows) micro-panel (MR columns of K rows of
// a matrix A, side by side per row), for products Aᵀ B summed over many rows (dense.cc).
// The right operand is a 64-column panel packed as each build reads it best (element (k, c)
// at ColumnPanelAt(K, k, c)): AVX2 runs each 16-column block's K loop on its own, so each
// block's K x 16 values are contiguous (rows 256 B apart would leave most L1 sets unused);
// AVX-512 reads a whole 64-column row per k.
#if defined(JRNN_AVX2)
constexpr int64_t ColumnPanelAt(int64_t K, int64_t k, int64_t c) {
  return (c / 16) * K * 16 + k * 16 + c % 16;
}
template <int MR>
JRNN_TARGET inline void AccumulateColumns(Vec (&acc)[MR][4], const float* at, const float* w,
                                          int64_t K) {
  for (int q = 0; q < 4; ++q) {
    __m256 lo[MR], hi[MR];
    for (int r = 0; r < MR; ++r) lo[r] = acc[r][q].lo, hi[r] = acc[r][q].hi;
    const float* wk = w + 16 * K * q;
    const float* a = at;
    for (int64_t k = 0; k < K; ++k, wk += 16, a += kMaxRows) {
      const __m256 w0 = _mm256_loadu_ps(wk), w1 = _mm256_loadu_ps(wk + 8);
      for (int r = 0; r < MR; ++r) {
        const __m256 v = _mm256_broadcast_ss(a + r);
        lo[r] = _mm256_fmadd_ps(v, w0, lo[r]);
        hi[r] = _mm256_fmadd_ps(v, w1, hi[r]);
      }
    }
    for (int r = 0; r < MR; ++r) acc[r][q] = Vec{lo[r], hi[r]};
  }
}
#else
constexpr int64_t ColumnPanelAt(int64_t, int64_t k, int64_t c) { return k * 64 + c; }
template <int MR>
JRNN_TARGET inline void AccumulateColumns(Vec (&acc)[MR][4], const float* at, const float* w,
                                          int64_t K) {
  for (int64_t k = 0; k < K; ++k, w += 64) {
    Vec wq[4];
    for (int q = 0; q < 4; ++q) wq[q] = LoadU(w + 16 * q);
    if constexpr (MR >= 3) PrefetchRow<4>(w + kPrefetchRows * 64, 16);
    const float* a = at + k * kMaxRows;
    for (int r = 0; r < MR; ++r) {
      const Vec v = Set1(a[r]);
      for (int q = 0; q < 4; ++q) acc[r][q] = Fmadd(v, wq[q], acc[r][q]);
    }
  }
}
#endif

#if !defined(JRNN_AVX2)
// Row k's and k+1's products of a bfloat16 tile (only row k's when last, for odd K):
// one vdpbf16ps adds two rows' products per lane, in float32.
template <int MR, int Q0, int NQ>
JRNN_TARGET inline void DotPair(Vec (&acc)[MR][4], const bf16* a, int64_t lda, const bf16* w,
                                int64_t k, bool last) {
  __m512bh wq[NQ];
  for (int q = 0; q < NQ; ++q) wq[q] = reinterpret_cast<__m512bh>(_mm512_loadu_si512(w + 32 * q));
  for (int r = 0; r < MR; ++r) {
    int32_t two = 0;  // (row k, row k+1) as bfloat16 bits, low half first
    std::memcpy(&two, a + r * lda + k, last ? sizeof(bf16) : sizeof two);
    const __m512bh v = reinterpret_cast<__m512bh>(_mm512_set1_epi32(two));
    for (int q = 0; q < NQ; ++q) acc[r][Q0 + q] = _mm512_dpbf16_ps(acc[r][Q0 + q], v, wq[q]);
  }
}

// The same GEMM over bfloat16 rows and a pair-interleaved panel (PackedRows(K) rows).
template <int MR, int Q0, int NQ>
JRNN_TARGET inline void Accumulate(Vec (&acc)[MR][4], const bf16* a, int64_t lda,
                                   const Panel<bf16>& panel, int64_t K) {
  static_assert(Q0 + NQ <= 4, "four accumulators per row");
  const bf16* w = panel.w;
  int64_t k = 0;
  for (; k + 1 < K; k += 2, w += 32 * NQ) DotPair<MR, Q0, NQ>(acc, a, lda, w, k, false);
  if (k < K) DotPair<MR, Q0, NQ>(acc, a, lda, w, k, true);
}
#endif  // bfloat16: AVX-512 only

#if !defined(JRNN_AVX2)
#define JRNN_AMX 1  // the AMX tiles below exist (AVX-512 build)
// ------------------------------------------------------------------ AMX (bfloat16)
// On CPUs with AMX (Intel Sapphire Rapids and later), the bfloat16 forward and backward
// tiles compute their products with tdpbf16ps on tile registers (AmxEnabled(), common.cc):
// 16 rows x 16 columns x 32 products per instruction. On the Intel benchmark machine the
// 6 x 64 vdpbf16ps tile ran 106 GFLOP/s on one core (its float32 FMA tile: 186) and a
// 16 x 64 AMX tile 630-740. tdpbf16ps accumulates in float32 like vdpbf16ps but rounds its
// partial sums differently (results differ in the last bits, ~3e-6 on unit-sized sums), so
// an AMX run equals a vdpbf16ps run to float32 rounding, not bit for bit; every row's
// result depends on that row alone, at any batch.
//
// Tile registers: tmm0-3 the float32 accumulators of a block of m <= 16 rows x 4
// 16-column blocks (one panel), tmm4 m rows x 32 bfloat16 of the left operand, tmm5-7 16
// pair-rows of 16 columns of the panel (64 bytes a row: a bfloat16 panel's layout,
// PackedPanel, is a tdpbf16ps right operand as it is). Tiles of m rows load and compute m
// rows: with every tile 16 rows, reading a batch of one through zero-padded copies, the
// streaming LSTM forward took 54 ms; with one-row tiles 5.1-5.4 (vdpbf16ps: 5.6-5.7).
// AMX instructions are written as inline assembly (the compilers' intrinsics take their
// tile numbers as macro tokens); they need GNU as 2.36 or later.
constexpr int kAmxRows = 16;

// The calling thread's tile configuration: tile registers are per thread, and other code
// on XLA's threads may configure them differently, so every chunk of work holds an
// AmxSession, which forgets the configuration on entry and releases the tiles on exit;
// tiles configure themselves for their row count (AmxConfigure) in between.
inline int& AmxConfiguredRows() {
  thread_local int rows = 0;  // 0: not configured by this chunk
  return rows;
}
inline void AmxConfigure(int rows) {
  int& current = AmxConfiguredRows();
  if (current == rows) return;
  struct alignas(64) Config {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
  } config = {};
  config.palette = 1;
  for (int t = 0; t < 8; ++t) {
    config.colsb[t] = 64;
    config.rows[t] = static_cast<uint8_t>(t < 5 ? rows : 16);
  }
  __asm__ volatile("ldtilecfg %0" ::"m"(config));
  current = rows;
}
// The deferred gate maths of this thread's last AMX forward tile (AmxForwardTile, below),
// if any: a function that runs them, set by the tile.
inline void (*&AmxDeferred())() {
  thread_local void (*run)() = nullptr;
  return run;
}
struct AmxSession {
  // Runs the deferred gate maths: at the end of each step of a chunk of work (Recur), as
  // the next step reads the h they write.
  static void StepDone() {
    if (void (*run)() = AmxDeferred()) {
      AmxDeferred() = nullptr;
      run();
    }
  }
  AmxSession() { AmxConfiguredRows() = 0; }
  ~AmxSession() {
    if (AmxConfiguredRows() != 0) __asm__ volatile("tilerelease" ::);
    AmxConfiguredRows() = 0;
  }
  AmxSession(const AmxSession&) = delete;
  AmxSession& operator=(const AmxSession&) = delete;
};

template <int Tmm>
inline void TileLoad(const void* base, int64_t stride) {
  __asm__ volatile("tileloadd (%0,%1,1), %%tmm%c2" ::"r"(base), "r"(stride), "i"(Tmm) : "memory");
}
template <int Tmm>
inline void TileStore(void* base, int64_t stride) {
  __asm__ volatile("tilestored %%tmm%c2, (%0,%1,1)" ::"r"(base), "r"(stride), "i"(Tmm) : "memory");
}
// The four accumulator tiles tmm0-3 from / to a block's sums (16 rows of 64 floats).
inline void LoadSums(const float (&sums)[kAmxRows][64]) {
  TileLoad<0>(&sums[0][0], sizeof sums[0]);
  TileLoad<1>(&sums[0][16], sizeof sums[0]);
  TileLoad<2>(&sums[0][32], sizeof sums[0]);
  TileLoad<3>(&sums[0][48], sizeof sums[0]);
}
inline void StoreSums(float (&sums)[kAmxRows][64]) {
  TileStore<0>(&sums[0][0], sizeof sums[0]);
  TileStore<1>(&sums[0][16], sizeof sums[0]);
  TileStore<2>(&sums[0][32], sizeof sums[0]);
  TileStore<3>(&sums[0][48], sizeof sums[0]);
}
// tmm(C) += tmm4 x tmm(B)
template <int C, int B>
inline void TileDot() {
  __asm__ volatile("tdpbf16ps %%tmm%c1, %%tmm4, %%tmm%c0" ::"i"(C), "i"(B));
}

// tmm(Q0 + j) += tmm4 x (16 pair-rows of the panel's block j, rows ldw bytes apart at w),
// j < NQ; the right operands rotate through tmm5-7.
template <int Q0, int NQ, int J = 0>
inline void TileDots(const bf16* w, int64_t ldw) {
  if constexpr (J < NQ) {
    constexpr int kB = 5 + J % 3;
    TileLoad<kB>(w + 32 * J, ldw);
    TileDot<Q0 + J, kB>();
    TileDots<Q0, NQ, J + 1>(w, ldw);
  }
}

// tmm(Q0 + q) += a (the configured m rows, lda apart, K columns) x panel (K rows, NQ
// blocks of 16 columns), q < NQ, in 32-column steps of the K loop. The last step, where
// fewer than 32 columns are left, reads a zero-padded copy of them (columns past K then
// meet zero rows of the right operand, also a zero-padded copy).
// after_step() runs after each step's products are issued (AmxForwardTile: the previous
// tile's gate maths, which then overlap them).
struct NoHook {
  void operator()() const {}
};
template <int Q0, int NQ, typename Hook = NoHook>
JRNN_TARGET inline void AmxAccumulate(const bf16* a, int64_t lda, int m, const Panel<bf16>& w,
                                      int64_t K, const Hook& after_step = Hook{}) {
  constexpr int64_t kLdw = 64 * NQ;  // bytes from one pair-row of the panel to the next
  int64_t k = 0;
  for (; k + 32 <= K; k += 32) {
    TileLoad<4>(a + k, 2 * lda);
    TileDots<Q0, NQ>(w.w + (k / 2) * 32 * NQ, kLdw);
    after_step();
  }
  if (k == K) return;
  const int64_t n = K - k;
  alignas(64) bf16 at[kAmxRows][32] = {};
  alignas(64) bf16 wt[16][32 * NQ] = {};
  for (int r = 0; r < m; ++r) std::memcpy(at[r], a + r * lda + k, n * sizeof(bf16));
  // The last pair-rows; a pair's second row is zero past odd K (PackedRows).
  std::memcpy(wt, w.w + (k / 2) * 32 * NQ, ((n + 1) / 2) * sizeof wt[0]);
  TileLoad<4>(at, sizeof at[0]);
  TileDots<Q0, NQ>(&wt[0][0], sizeof wt[0]);
  after_step();
}

// Pre-activations of m <= 16 rows on one panel: out[r][16 q + c] = init[q][c] +
// x_r Wx (blocks XQ0 .. XQ0 + XNQ - 1) + h_r Wh (blocks HQ0 .. HQ0 + HNQ - 1), summed in
// that order, float32. x and h rows are ldx and ldh elements apart.
template <int XQ0, int XNQ, int HQ0, int HNQ, typename Hook = NoHook>
JRNN_TARGET inline void AmxPreactivations(float (&out)[kAmxRows][64], const Vec (&init)[4], int m,
                                          const bf16* x, int64_t ldx, const Panel<bf16>& wx,
                                          int64_t F, const bf16* h, int64_t ldh,
                                          const Panel<bf16>& wh, int64_t H,
                                          const Hook& after_step = Hook{}) {
  AmxConfigure(m);
  for (int r = 0; r < m; ++r) {
    for (int q = 0; q < 4; ++q) StoreU(&out[r][16 * q], init[q]);
  }
  LoadSums(out);
  AmxAccumulate<XQ0, XNQ>(x, ldx, m, wx, F, after_step);
  AmxAccumulate<HQ0, HNQ>(h, ldh, m, wh, H, after_step);
  StoreSums(out);
}
// Row r of AmxPreactivations' (or AmxIncomingDh's) result as a one-row tile's accumulators.
JRNN_TARGET inline void AmxRow(const float (&out)[kAmxRows][64], int r, Vec (&acc)[1][4]) {
  for (int q = 0; q < 4; ++q) acc[0][q] = LoadU(&out[r][16 * q]);
}

// A bfloat16 forward tile on AMX for any cell's arguments a (members d, F, x, wpack,
// rpack, h): the pre-activations of rows b0 .. b0 + m - 1 on panel p (AmxPreactivations
// from init, over panels of XNQ and HNQ blocks), then rows(b, acc, hprev, ldh) for each
// row b: the cell's gate maths of one row from its sums and its h_{t-1} (a JRNN_TARGET
// lambda, so that the gate maths inline here; it must hold no reference to the caller's
// locals, as it runs later).
//
// The gate maths run deferred: a tile leaves its rows to the thread's next tile, which
// runs one of them after each step of its own products' K loop (the rest after the loop),
// so that the vector units work while the AMX unit computes; out of order execution
// alone overlaps only a reorder buffer's worth of the two. AmxSession::StepDone runs what
// is left at the end of every step of a chunk of work (Recur), before the next step reads
// the h they write; within a step, a tile's rows write only their own rows' and units'
// h, c and saved gates, which the tiles after them do not read. The arithmetic is the
// same, in the same order per row: results are bitwise those of running each tile's rows
// at its end. On the Intel benchmark machine (alternating processes): LSTM throughput
// forward 32.3-38.9 -> 24.4-27.6 ms, typical 5.7-5.9 -> 3.7-4.1, GRU throughput 24.5-24.7
// -> 16.2-18.7; the forward pass with its saves for training 44.4-46.7 -> 36.4-39.0 (3 of
// 4 rounds; one took 62.9). The backward tiles, whose gate maths are lighter (no exp),
// were measured deferred the same way and not kept (LSTM throughput backward kernel
// 34.4-38.8 against 33.2-35.4 ms).
template <typename RowsFn>
struct AmxDeferredRows {
  alignas(64) float z[2][kAmxRows][64];  // the pending tile's sums, and the running one's
  int running = 0;                       // z[running]: the running tile's
  std::optional<RowsFn> rows;
  const bf16* hprev = nullptr;
  int64_t ldh = 0, b0 = 0;
  int m = 0, next = 0;  // pending rows next .. m - 1

  JRNN_TARGET void RunOne() {
    Vec acc[1][4];
    AmxRow(z[running ^ 1], next, acc);
    (*rows)(b0 + next, acc, hprev + next * ldh, ldh);
    ++next;
  }
  JRNN_TARGET void RunAll() {
    while (next < m) RunOne();
  }
  static AmxDeferredRows& Get() {
    thread_local AmxDeferredRows deferred;
    return deferred;
  }
  static void Flush() { Get().RunAll(); }
};

template <int XQ0, int XNQ, int HQ0, int HNQ, typename Args, typename RowsFn>
JRNN_TARGET inline void AmxForwardTile(const Args& a, int64_t t, int64_t b0, int m, int64_t p,
                                       const Vec (&init)[4], const RowsFn& rows) {
  const int64_t T = a.d.T, H = a.d.H, F = a.F;
  int64_t ldh;
  const bf16* hprev = a.h.Prev(t, b0, &ldh);
  auto& d = AmxDeferredRows<RowsFn>::Get();
  AmxPreactivations<XQ0, XNQ, HQ0, HNQ>(
      d.z[d.running], init, m, a.x + a.d.Row(b0, t) * F, T * F, PackedPanel<XNQ>(a.wpack, p, F),
      F, hprev, ldh, PackedPanel<HNQ>(a.rpack, p, H), H, [&d]() JRNN_TARGET {
        if (d.next < d.m) d.RunOne();
      });
  d.RunAll();  // the previous tile's rows its K loop did not reach
  d.rows.emplace(rows);
  d.hprev = hprev;
  d.ldh = ldh;
  d.b0 = b0;
  d.m = m;
  d.next = 0;
  d.running ^= 1;
  AmxDeferred() = &AmxDeferredRows<RowsFn>::Flush;
}
#endif  // AMX: AVX-512 build only

// LSTM's gate maths (sigmoid gates, tanh) for 16 units of one row: the gates, c and h from
// the pre-activations z (i, f, c, o) and the previous c (lstm.cc, conv_lstm.cc).
struct LstmUnits {
  Vec i, f, g, o, c, h;
};
JRNN_TARGET inline LstmUnits LstmStep(const Vec (&z)[4], Vec c_prev) {
  LstmUnits u;
  u.i = Sigmoid(z[0]);
  u.f = Sigmoid(z[1]);
  u.g = Tanh(z[2]);
  u.o = Sigmoid(z[3]);
  u.c = Fmadd(u.f, c_prev, Mul(u.i, u.g));
  u.h = Mul(u.o, Tanh(u.c));
  return u;
}

// Saves what LSTM's backward pass reads: the gates i, f, g, o at gs, gs + H, gs + 2H,
// gs + 3H (in the storage type G), and c at cs (float32).
template <typename G>
JRNN_TARGET inline void SaveLstmStep(Mask m, const LstmUnits& u, G* gs, int64_t H, float* cs) {
  Store(m, gs, u.i);
  Store(m, gs + H, u.f);
  Store(m, gs + 2 * H, u.g);
  Store(m, gs + 3 * H, u.o);
  Store(m, cs, u.c);
}

// Back through LSTM's gate maths for 16 units of one row: from dh, the dc that step t+1
// passes back, the saved gates (i, f, g, o H apart from gs), c and the previous c, writes
// the pre-activation gradients (H apart from dz) and returns the dc passed to step t-1.
// dz may be gs itself (every gate is read before its gradient is written).
template <typename S>
JRNN_TARGET inline Vec LstmStepGrads(Mask m, Vec dh, Vec dc_next, const S* gs, int64_t H, Vec c,
                                     Vec c_prev, S* dz) {
  const Vec one = Set1(1.0f);
  const Vec i = Load(m, gs), f = Load(m, gs + H), g = Load(m, gs + 2 * H);
  const Vec o = Load(m, gs + 3 * H);
  const Vec tc = Tanh(c);
  const Vec dout = Mul(dh, tc);
  const Vec dc = Fmadd(Mul(dh, o), Fnmadd(tc, tc, one), dc_next);
  // dz_i = dc g i (1 - i); dz_f = dc c_prev f (1 - f); dz_g = dc i (1 - g²); dz_o = dout o (1 - o)
  Store(m, dz, Mul(Mul(dc, g), Mul(i, Sub(one, i))));
  Store(m, dz + H,
        Mul(Mul(dc, c_prev), Mul(f, Sub(one, f))));
  Store(m, dz + 2 * H, Mul(Mul(dc, i), Fnmadd(g, g, one)));
  Store(m, dz + 3 * H, Mul(dout, Mul(o, Sub(one, o))));
  return Mul(dc, f);
}

// Lane masks of the four 16-unit blocks of a backward tile's units 64p..64p+63.
inline void UnitMasks(int64_t H, int64_t p, Mask (&m)[4]) {
  for (int q = 0; q < 4; ++q) m[q] = TailMask(static_cast<int>(H - 64 * p - 16 * q));
}

// Accumulate, for the backward tiles' product dz Rᵀ (IncomingDh). The AVX2 build never
// inlines it: its micro-kernel needs 15 of the 16 ymm registers, and inlined into a
// backward tile the compiler kept tile values in registers and spilled an accumulator
// instead (a store and reload in every iteration of the K loop, which halved the SimpleRNN
// backward kernel's GEMM rate). The forward tiles inline it unharmed.
template <int MR, int Q0, int NQ, typename S>
#if defined(JRNN_AVX2)
JRNN_TARGET __attribute__((noinline)) void AccumulateApart(
#else
JRNN_TARGET inline void AccumulateApart(
#endif
    Vec (&acc)[MR][4], const S* a, int64_t lda, const Panel<S>& w, int64_t K) {
  Accumulate<MR, Q0, NQ>(acc, a, lda, w, K);
}

// dy[:, t] + carry, the start of IncomingDh.
template <int MR, typename S>
JRNN_TARGET inline void DhInit(Vec (&acc)[MR][4], const Mask (&m)[4], const Dims& d, int64_t t,
                               int64_t b0, int64_t p, const S* dy, const float* carry) {
  const int64_t H = d.H;
  for (int r = 0; r < MR; ++r) {
    const int64_t b = b0 + r;
    for (int q = 0; q < 4; ++q) {
      const int64_t u = 64 * p + 16 * q;
      acc[r][q] = Load(m[q], dy + d.YRow(b, t) + u);
      if (carry != nullptr) acc[r][q] = Add(acc[r][q], Load(m[q], carry + b * H + u));
    }
  }
}

// A backward tile's incoming state gradient dh_t (rows b0.., units 64p..64p+63) into acc:
// dy[:, t] + carry + (t < T-1 ? g[:, t+1] Rᵀ : 0) (t a step, at its row: Dims), with
// carry (B, H) what the step after
// passes back directly (null for none) and g (B, T, G) the pre-activation gradients that
// reach h through R (rtpack: the packed Rᵀ, G + G2 rows), or, where g2 is given, their
// first G columns, the other G2 being g2 (B, T, G2). S: float32, or bfloat16 for dy, g
// and rtpack (the bfloat16 kernels' backward pass; the carry and acc stay float32).
template <int MR, typename S>
JRNN_TARGET void IncomingDh(Vec (&acc)[MR][4], const Mask (&m)[4], const Dims& d,
                            int64_t G, int64_t t, int64_t b0, int64_t p, PanelShare share,
                            const S* dy, const float* carry, const S* g, const S* rtpack,
                            const S* g2 = nullptr, int64_t G2 = 0) {
  const int64_t T = d.T;
  // The sums in a local array, copied to acc at the end: where this function was not
  // inlined (into the GRU's backward tile), GCC stored every sum to the caller's acc at
  // every k of the K loop (the loads through g might read it), and the float32 GRU
  // training step ran 15% slower (throughput shape; 2026-12-06 until this fix).
  Vec sums[MR][4];
  DhInit<MR, S>(sums, m, d, t, b0, p, dy, carry);
  if (t < T - 1) {
    const Panel<S> panel = PanelAhead<4>(rtpack, p, G + G2, share);
    AccumulateApart<MR, 0, 4>(sums, g + d.Row(b0, t + 1) * G, T * G, panel, G);
    // Rows G.. of a bfloat16 panel start at pair G/2: G is even wherever g2 is given.
    if (g2 != nullptr) {
      AccumulateApart<MR, 0, 4>(sums, g2 + d.Row(b0, t + 1) * G2, T * G2, panel.From(G), G2);
    }
  }
  for (int r = 0; r < MR; ++r) {
    for (int q = 0; q < 4; ++q) acc[r][q] = sums[r][q];
  }
}

#if defined(JRNN_AMX)
// IncomingDh for m <= 16 rows on AMX (bfloat16 g and rtpack), into out[r][16 q + c].
JRNN_TARGET inline void AmxIncomingDh(float (&out)[kAmxRows][64], const Mask (&m)[4],
                                      const Dims& d, int64_t G, int64_t t, int64_t b0, int rows,
                                      int64_t p, const bf16* dy, const float* carry,
                                      const bf16* g, const bf16* rtpack,
                                      const bf16* g2 = nullptr, int64_t G2 = 0) {
  for (int r = 0; r < rows; ++r) {
    Vec acc[1][4];
    DhInit<1, bf16>(acc, m, d, t, b0 + r, p, dy, carry);
    for (int q = 0; q < 4; ++q) StoreU(&out[r][16 * q], acc[0][q]);
  }
  if (t == d.T - 1) return;
  AmxConfigure(rows);
  LoadSums(out);
  const Panel<bf16> panel = PackedPanel<4>(rtpack, p, G + G2);
  AmxAccumulate<0, 4>(g + d.Row(b0, t + 1) * G, d.T * G, rows, panel, G);
  if (g2 != nullptr) AmxAccumulate<0, 4>(g2 + d.Row(b0, t + 1) * G2, d.T * G2, rows, panel.From(G), G2);
  StoreSums(out);
}
#endif

// The h that step t's recurrent product read, for a backward tile's rows b0.. and units
// 64p..64p+63 (h0 at t = 0, else the output of step t-1), into hprev (B, T, H) at step
// t's row: the left operand of the recurrent kernel's gradient Hᵀ g, written over dy's
// buffer (XLA aliases the two), whose entries the tile has read. t is a step (Dims).
template <typename S>
inline void StorePrevH(const Dims& d, int64_t t, int64_t b0, int rows, int64_t p, const S* y,
                       const S* h0, S* hprev) {
  const int64_t H = d.H, u0 = 64 * p, n = std::min<int64_t>(64, H - u0);
  for (int r = 0; r < rows; ++r) {
    const int64_t b = b0 + r;
    const S* src = t == 0 ? h0 + b * H + u0 : y + d.YRow(b, t - 1) + u0;
    std::copy_n(src, n, hprev + d.Row(b, t) * H + u0);
  }
}
template <int MR, typename S>
inline void StorePrevH(const Dims& d, int64_t t, int64_t b0, int64_t p, const S* y, const S* h0,
                       S* hprev) {
  StorePrevH(d, t, b0, MR, p, y, h0, hprev);
}

// acc[r][q] = init[q] for every row r of a tile: the sums' starting values (biases).
template <int MR>
JRNN_TARGET inline void SetRows(Vec (&acc)[MR][4], const Vec (&init)[4]) {
  for (int r = 0; r < MR; ++r) {
    for (int q = 0; q < 4; ++q) acc[r][q] = init[q];
  }
}

// Calls f(std::integral_constant<int, rows>{}) for rows in 1..kMaxRows: a tile template
// instantiated per row count.
template <typename F>
void ByRows(int rows, F&& f) {
  switch (rows) {
    case 6: f(std::integral_constant<int, 6>{}); break;
    case 5: f(std::integral_constant<int, 5>{}); break;
    case 4: f(std::integral_constant<int, 4>{}); break;
    case 3: f(std::integral_constant<int, 3>{}); break;
    case 2: f(std::integral_constant<int, 2>{}); break;
    default: f(std::integral_constant<int, 1>{}); break;
  }
}

// Waits until counter >= target: spins briefly (the other threads are normally running on
// their own cores), then yields, so that a thread waiting on one that was descheduled (more
// threads than cores, e.g. several processes) hands it the core instead of burning it.
inline void WaitFor(const std::atomic<int64_t>& counter, int64_t target) {
  for (int spin = 0; counter.load(std::memory_order_acquire) < target; ++spin) {
    if (spin < 4096) {
      _mm_pause();
    } else {
      std::this_thread::yield();
    }
  }
}

// Runs chunk(g, done) for every g in [0, total), in claim order, on the calling thread and
// up to threads - 1 helpers scheduled on XLA's intra-op thread pool (so no thread outside
// XLA's pool competes for the cores); done counts the chunks finished so far (a chunk may
// wait on it for earlier ones). The caller can finish every chunk alone, so a helper that
// never gets a thread (the pool busy with another custom call, e.g. the other direction
// of a Bidirectional layer) only means less parallelism, never a deadlock.
template <typename ChunkFn>
void ParallelChunks(ffi::ThreadPool& pool, int64_t threads, int64_t total, const ChunkFn& chunk) {
  struct Shared {
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
  };
  auto shared = std::make_shared<Shared>();
  // `chunk` is only touched for claimed chunks (index < total), all of which finish before
  // this function returns; a late helper only sees next >= total and leaves.
  auto work = [shared, total, &chunk] {
    for (;;) {
      const int64_t g = shared->next.fetch_add(1, std::memory_order_acq_rel);
      if (g >= total) return;
      chunk(g, shared->done);
      shared->done.fetch_add(1, std::memory_order_acq_rel);
    }
  };
  for (int64_t i = 1; i < threads; ++i) {
    auto helper = work;  // Schedule takes its task by value
    pool.Schedule(std::move(helper));
  }
  work();
  WaitFor(shared->done, total);
}

// Asks Linux to back the 2 MiB-aligned interior of each buffer with transparent huge
// pages (MADV_HUGEPAGE; honoured where THP is "madvise" or "always"). For the buffers a
// forward kernel saves for training: XLA:CPU maps a call's temporaries afresh every time,
// and each 4 KiB page faults on first touch (~1.7 us on the benchmark machine; 10.4k per
// typical GRU training step). An empty buffer (y when only the last state is returned)
// is skipped. JRNN_NATIVE_HUGEPAGES=0 turns this off.
template <typename... Buffers>
inline void AdviseHugePages(Buffers&... buffers) {
  if (const char* env = std::getenv("JRNN_NATIVE_HUGEPAGES")) {
    if (env[0] == '0') return;
  }
  constexpr uintptr_t kHuge = uintptr_t{1} << 21;
  for (const ffi::AnyBuffer* b : {&*buffers...}) {
    const uintptr_t p = reinterpret_cast<uintptr_t>(b->untyped_data());
    const uintptr_t lo = (p + kHuge - 1) & ~(kHuge - 1), hi = (p + b->size_bytes()) & ~(kHuge - 1);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (hi > lo) madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_HUGEPAGE);
#else
    (void)lo, (void)hi;
#endif
  }
}

// A check for a kernel that reads one of its results before writing it
// (JRNN_NATIVE_POISON=1, read at every call; `tests/test_native.py` runs every kernel so):
// fills each result that is none of the call's inputs with 0xFF bytes, a NaN in float32
// and in bfloat16, before the kernel runs. A result that is an input (XLA's in-place
// aliases: `y_in`, a backward kernel's dz over the saved gates) carries data and is left
// alone. XLA hands a kernel its other results uninitialised, often as zeroed fresh pages,
// so without this a test of such a read could pass by luck.
inline void PoisonFreshResults(std::initializer_list<ffi::AnyBuffer> inputs,
                               std::initializer_list<ffi::AnyBuffer> results) {
  const char* env = std::getenv("JRNN_NATIVE_POISON");
  if (env == nullptr || env[0] != '1') return;
  for (const ffi::AnyBuffer& r : results) {
    const bool aliased = std::any_of(inputs.begin(), inputs.end(), [&](const ffi::AnyBuffer& in) {
      return in.untyped_data() == r.untyped_data();
    });
    if (!aliased && r.size_bytes() > 0) std::memset(r.untyped_data(), 0xFF, r.size_bytes());
  }
}

// A backward kernel's result that XLA writes over dy (h_{t-1}; SimpleRNN's dz) where dy
// is the call's alone (slots == 1). Where dy holds several calls' slots it is a fresh
// array: huge pages spare its first touches most page faults.
template <typename Buffer>
inline void AdviseHugePagesUnlessOverDy(int64_t slots, Buffer& result) {
  if (slots > 1) AdviseHugePages(result);
}

// The thread count a kernel uses: XLA's intra-op pool, or JRNN_NATIVE_THREADS.
inline int64_t PoolThreads(ffi::ThreadPool& pool) {
  int64_t threads = std::max<int64_t>(1, pool.num_threads());
  if (const char* env = std::getenv("JRNN_NATIVE_THREADS")) threads = std::atoi(env);
  return std::max<int64_t>(1, threads);
}

// Runs tile(rows, d, s, b0, p, share) for every direction d < D (independent recurrences
// of one call: a bidirectional layer's two), step s (first to last, or last to first when
// `reverse`), row block b0 (rows b0 .. b0 + rows - 1) and unit panel p < panels; each
// step's tiles of a direction run after its tiles of the step before. It runs on the
// calling thread and helpers scheduled on XLA's intra-op thread pool (so no thread outside
// XLA's pool competes for the cores). Row blocks hold at most kRows rows: for the register
// tiles (kMaxRows), rows is a std::integral_constant (tiles are templates instantiated per
// row count) and a chunk's rows split into balanced blocks; for AMX tiles (kAmxRows) rows
// is an int and blocks are full but for the batch's last. Every chunk of work holds a
// Session (AmxSession: the thread's tile configuration) while it runs. A thread runs a
// step's row blocks of its chunk on one panel, then on the next: `share` (PanelShare)
// tells a tile which share of the next panel's weights to prefetch (PanelAhead).
// Work is cut into chunks claimed from one counter (ParallelChunks), two ways:
//   * by batch rows, when there are enough: rows never interact, so each chunk runs all
//     T steps of one direction for its rows with no synchronisation at all, and threads
//     write disjoint memory (no contention on first-touch page faults of the fresh result
//     buffers);
//   * by unit panels within each step (small batches): chunk k of step s starts once
//     every chunk of the steps before it is done.
struct NoSession {
  static void StepDone() {}
};

// One core's L2 cache in bytes: JRNN_NATIVE_L2_BYTES where set (read at every call; the
// tests set it small to run the prefetching tiles at small shapes), else the C library's
// figure, else 1 MiB.
inline int64_t L2Bytes() {
  if (const char* env = std::getenv("JRNN_NATIVE_L2_BYTES")) return std::atoll(env);
  static const int64_t detected = [] {
    long b = -1;
#if defined(_SC_LEVEL2_CACHE_SIZE)
    b = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
    return b > 0 ? static_cast<int64_t>(b) : int64_t{1} << 20;
  }();
  return detected;
}

template <int kRows = kMaxRows, typename Session = NoSession, typename TileFn>
void Recur(ffi::ThreadPool& pool, int64_t D, int64_t B, int64_t T, int64_t panels,
           int64_t fmas_per_step, bool reverse, const TileFn& tile) {
  constexpr bool kBalanced = kRows == kMaxRows;
  const int64_t row_blocks = (B + kRows - 1) / kRows;
  const int64_t items = D * row_blocks * panels;
  int64_t threads = PoolThreads(pool);
  const bool by_rows = D * row_blocks >= threads;
  // Per-step hand-offs between cores cost ~1 us: below ~64k FMAs per step one thread wins.
  if (!by_rows && D * fmas_per_step < (1 << 16)) threads = 1;
  threads = std::max<int64_t>(1, std::min(threads, items));
  // By rows: one chunk per thread but at least two per direction, and a multiple of the
  // thread count in all where the row blocks allow it (3 chunks on 2 threads leave one
  // idle for a third of the call). Every chunk reads all of a step's weights, so fewer
  // chunks read them fewer times from L3 where they are more than L2 holds, but a chunk's
  // rows must stay in L2 for every panel: at the throughput shape (256, 50, 256, 512) on
  // 2 threads, the LSTM forward took 2-5% longer in 4 chunks than in 2, and the
  // Bidirectional LSTM's 3% longer in 2 chunks (256 rows each) than in 4.
  int64_t per_direction = std::min(row_blocks, std::max<int64_t>(2, threads / D));
  while ((D * per_direction) % threads != 0 && D * (per_direction - 1) >= threads) {
    --per_direction;
  }
  // By panels: one chunk per thread and step. Every chunk costs two atomic updates of
  // counters all threads share, which at these small steps is much of a step's time: in
  // 1 chunk per thread instead of 4 (alternating builds, fastest of 15 calls, 3 rounds),
  // the (1, 1000, 64, 256) LSTM forward took 6.1-6.5 ms instead of 6.9-7.3, the (2, 1000,
  // 64, 128) LSTM's 3.4 instead of 4.0-4.2 and GRU's 2.6-2.7 instead of 3.0-3.9, the (4,
  // 1000, 64, 256) GRU training step 35.1-36.7 instead of 38.2-40.6; at batch 1 with 512
  // units (weights past L2) the times spread too widely to tell (LSTM training step
  // 92-115 against 104-120 ms).
  const int64_t chunks =
      by_rows ? D * per_direction : (threads == 1 ? 1 : std::min<int64_t>(items, threads));
  const int64_t total = by_rows ? chunks : T * chunks;
  // Each weight feeds one FMA per row and step, so a step reads fmas_per_step / B weights.
  // Tiles prefetch the next panel (PanelAhead) where those take more than half of L2 (the
  // rest holds the chunk's rows): the SimpleRNN (256, 50, 256, 512) forward, 1.5 MiB of
  // weights, ran 3% faster with it; where the weights stay in L2 it finds its lines there
  // and gains nothing (forced on, the (64, 100, 128, 256) SimpleRNN forward: level).
  const bool ahead = fmas_per_step / B * int64_t{sizeof(float)} > L2Bytes() / 2;

  auto call = [&tile](int64_t rows, int64_t d, int64_t s, int64_t b0, int64_t p, PanelShare share) {
    if constexpr (kBalanced) {
      ByRows(static_cast<int>(rows), [&](auto mr) { tile(mr, d, s, b0, p, share); });
    } else {
      tile(static_cast<int>(rows), d, s, b0, p, share);
    }
  };
  // Rows [lo, hi) in blocks of at most kRows, every panel, step s. Panel-outer: one weight
  // panel stays in L2 while every row block of the chunk uses it.
  auto rows_step = [&call, panels, ahead](int64_t d, int64_t s, int64_t lo, int64_t hi) {
    const int64_t n = hi - lo, blocks = (n + kRows - 1) / kRows;
    for (int64_t p = 0; p < panels; ++p) {
      for (int64_t j = 0; j < blocks; ++j) {
        const int64_t b0 = kBalanced ? lo + n * j / blocks : lo + kRows * j;
        const int64_t b1 = kBalanced ? lo + n * (j + 1) / blocks : std::min(hi, b0 + kRows);
        call(b1 - b0, d, s, b0, p,
             ahead ? PanelShare{j, blocks, (p + 1) % panels} : PanelShare{});
      }
    }
  };
  ParallelChunks(pool, threads, total, [&](int64_t g, const std::atomic<int64_t>& done) {
    if (by_rows) {
      const int64_t d = g / per_direction, c = g % per_direction;
      // AMX chunks start on a block boundary (only the batch's last block is partial).
      const int64_t lo = kBalanced ? B * c / per_direction
                                   : std::min(B, kRows * (row_blocks * c / per_direction));
      const int64_t hi = kBalanced ? B * (c + 1) / per_direction
                                   : std::min(B, kRows * (row_blocks * (c + 1) / per_direction));
      [[maybe_unused]] const Session session;
      for (int64_t s = 0; s < T; ++s) {
        rows_step(d, reverse ? T - 1 - s : s, lo, hi);
        Session::StepDone();
      }
    } else {
      const int64_t i = g / chunks, c = g % chunks;
      WaitFor(done, i * chunks);
      const int64_t s = reverse ? T - 1 - i : i;
      [[maybe_unused]] const Session session;
      for (int64_t it = items * c / chunks, hi = items * (c + 1) / chunks; it < hi; ++it) {
        const int64_t d = it / (row_blocks * panels), k = it % (row_blocks * panels);
        const int64_t p = k / row_blocks, b0 = (k % row_blocks) * kRows;
        call(std::min<int64_t>(kRows, B - b0), d, s, b0, p,
             ahead ? PanelShare{b0 / kRows, row_blocks, (p + 1) % panels} : PanelShare{});
      }
      Session::StepDone();
    }
  });
}

// A forward call's directions: tile(rows, a[k], s, b0, p, share) for each direction k's
// arguments a[k] (all of the same sizes, their Dims in member d).
template <int kRows = kMaxRows, typename Session = NoSession, typename Args, typename TileFn>
void RecurDirections(ffi::ThreadPool& pool, const std::vector<Args>& a, int64_t panels,
                     int64_t fmas_per_step, const TileFn& tile) {
  const Dims& d = a[0].d;
  Recur<kRows, Session>(pool, static_cast<int64_t>(a.size()), d.B, d.T, panels, fmas_per_step, false,
        [&](auto mr, int64_t k, int64_t s, int64_t b0, int64_t p, PanelShare share) {
          tile(mr, a[k], s, b0, p, share);
        });
}

// One recurrence: tile(rows, s, b0, p, share).
template <int kRows = kMaxRows, typename Session = NoSession, typename TileFn>
void Recur(ffi::ThreadPool& pool, int64_t B, int64_t T, int64_t panels, int64_t fmas_per_step,
           bool reverse, const TileFn& tile) {
  Recur<kRows, Session>(pool, 1, B, T, panels, fmas_per_step, reverse,
        [&](auto mr, int64_t, int64_t s, int64_t b0, int64_t p, PanelShare share) {
          tile(mr, s, b0, p, share);
        });
}

}  // namespace JRNN_ISA
}  // namespace jrnn
#endif  // JRNN_X86

#endif  // JRNN_NATIVE_COMMON_H_
