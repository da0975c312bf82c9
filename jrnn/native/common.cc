// Definitions shared by the native kernels (see common.h).
#include "common.h"

#include <string>

#if defined(JRNN_X86)
#include <cpuid.h>
#endif
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

// The best instruction set of this CPU that a kernel build runs: 2 = AVX-512 (F, DQ, BW,
// VL: the *_avx512 handlers), 1 = AVX2 with FMA (the *_avx2 handlers), 0 = neither.
extern "C" int jrnn_native_isa() {
#if defined(JRNN_X86)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")) {
    return 2;
  }
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 1 : 0;
#else
  return 0;
#endif
}

extern "C" int jrnn_native_bf16_supported() { return jrnn::Bf16Supported(); }

extern "C" int jrnn_native_amx() { return jrnn::AmxEnabled(); }

namespace jrnn {

bool Bf16Supported() {
#if defined(JRNN_X86)
  static const bool supported = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl");
  }();
  return supported;
#else
  return false;
#endif
}

bool AmxEnabled() {
#if defined(JRNN_X86) && defined(__linux__)
  static const bool supported = [] {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (!Bf16Supported() || !__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
    const bool amx = (edx >> 22 & 1) != 0 && (edx >> 24 & 1) != 0;  // AMX-BF16, AMX-TILE
    // Linux (5.16+) hands out the 8 KiB tile data state on request, for the whole process
    // (ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA); without it the first tile load faults.
    constexpr int kReqXcompPerm = 0x1023, kXtileData = 18;
    return amx && syscall(SYS_arch_prctl, kReqXcompPerm, kXtileData) == 0;
  }();
  if (const char* env = std::getenv("JRNN_NATIVE_AMX")) {
    if (env[0] == '0') return false;
  }
  return supported;
#else
  return false;
#endif
}

namespace {
std::string TypeName(ffi::DataType t) {
  switch (t) {
    case ffi::DataType::F32: return "float32";
    case ffi::DataType::BF16: return "bfloat16";
    case ffi::DataType::F16: return "float16";
    case ffi::DataType::F64: return "float64";
    case ffi::DataType::U8: return "uint8";
    case ffi::DataType::S32: return "int32";
    default: return "XLA type " + std::to_string(static_cast<int>(t));
  }
}
// "(4, 5)"
template <typename It>
std::string ShapeString(It begin, It end) {
  std::string s = "(";
  for (auto it = begin; it != end; ++it) s += (it == begin ? "" : ", ") + std::to_string(*it);
  return s + ")";
}
std::string ShapeString(ffi::AnyBuffer::Dimensions dims) {
  return ShapeString(dims.begin(), dims.end());
}

}  // namespace

ffi::Error CheckType(const char* what, ffi::DataType got, ffi::DataType want) {
  if (got == want) return ffi::Error::Success();
  return ffi::Error(ffi::ErrorCode::kInvalidArgument, std::string("jrnn native kernel: ") + what +
                                                          " must be " + TypeName(want) +
                                                          ", received " + TypeName(got));
}

ffi::Error CheckDims(const char* what, ffi::AnyBuffer::Dimensions dims,
                     std::initializer_list<int64_t> want) {
  bool ok = dims.size() == want.size();
  int i = 0;
  for (int64_t w : want) {
    ok = ok && (w < 0 || dims[i] == w);
    ++i;
  }
  if (!ok) {  // "dw must have shape (4, 5), received (4, 6)" (-1: any size)
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      std::string("jrnn native kernel: ") + what + " must have shape " +
                          ShapeString(want.begin(), want.end()) + ", received " +
                          ShapeString(dims.begin(), dims.end()));
  }
  return ffi::Error::Success();
}

ffi::Error ReadForwardDims(const char* cell, ffi::AnyBuffer::Dimensions x,
                           ffi::AnyBuffer::Dimensions h0, ffi::AnyBuffer::Dimensions y,
                           size_t saved, int64_t slot, ForwardDims* out) {
  if (x.size() != 3 || h0.size() != 3) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      std::string("jrnn native ") + cell + ": x must be (B, T, F) and h0 (D, B, H)");
  }
  *out = {x[0], x[1], x[2], h0[2], !(y.size() == 1 && y[0] == 0), saved != 0, h0[0], 1};
  if (out->save && !out->sequence) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      std::string("jrnn native ") + cell + ": saving for the backward pass needs y");
  }
  if (out->D < 1) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      std::string("jrnn native ") + cell + ": needs at least one direction");
  }
  JRNN_CHECK(CheckDims("h0", h0, {out->D, out->B, out->H}));
  if (out->sequence) return ReadSlot("y", y, out->B, out->T, out->D * out->H, slot, &out->slots);
  if (slot != 0) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      std::string("jrnn native ") + cell + ": a slot of y needs y");
  }
  return ffi::Error::Success();
}

ffi::Error ReadSlot(const char* name, ffi::AnyBuffer::Dimensions dims, int64_t B, int64_t T,
                    int64_t width, int64_t slot, int64_t* slots) {
  const bool ok = dims.size() == 3 && dims[0] == B && dims[1] == T &&
                  (width > 0 ? dims[2] % width == 0 && dims[2] > 0 : dims[2] == 0);
  *slots = ok && width > 0 ? dims[2] / width : 1;
  if (!ok || slot < 0 || slot >= *slots) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      "jrnn native kernel: " + std::string(name) + " must be (" + std::to_string(B) +
                          ", " + std::to_string(T) + ", slots x " + std::to_string(width) +
                          ") with slot " + std::to_string(slot) + " < slots; received " +
                          ShapeString(dims));
  }
  return ffi::Error::Success();
}

ffi::Error CheckYIn(ffi::AnyBuffer y_in, const void* y) {
  const auto dims = y_in.dimensions();
  if ((dims.size() == 1 && dims[0] == 0) || y_in.untyped_data() == y) {
    return ffi::Error::Success();
  }
  return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                    "jrnn native kernel: y_in must be (0,) or alias y (input_output_aliases); received "
                    "a separate buffer " + ShapeString(dims));
}

ffi::Error ReadMask(ffi::AnyBuffer mask, int64_t B, int64_t T, const uint8_t** out) {
  JRNN_CHECK(CheckType("mask", mask.element_type(), ffi::DataType::U8));
  const auto dims = mask.dimensions();
  if (dims.size() == 1 && dims[0] == 0) {
    *out = nullptr;
    return ffi::Error::Success();
  }
  JRNN_CHECK(CheckDims("mask", dims, {B, T}));
  *out = reinterpret_cast<const uint8_t*>(mask.untyped_data());
  return ffi::Error::Success();
}

}  // namespace jrnn
