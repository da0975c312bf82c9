// Definitions shared by the native kernels (see common.h).
#include "common.h"

#include <string>

extern "C" int jrnn_native_supported() {
#if defined(JRNN_X86)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
#else
  return 0;
#endif
}

namespace jrnn {

ffi::Error CheckDims(const char* what, ffi::AnyBuffer::Dimensions dims,
                     std::initializer_list<int64_t> want) {
  if (dims.size() != want.size()) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      std::string("jrnn native kernel: rank mismatch for ") + what);
  }
  int i = 0;
  for (int64_t w : want) {
    if (w >= 0 && dims[i] != w) {
      return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                        std::string("jrnn native kernel: shape mismatch for ") + what);
    }
    ++i;
  }
  return ffi::Error::Success();
}

}  // namespace jrnn
