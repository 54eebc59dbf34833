// Shared libraries loaded with dlopen the first time they are needed rather
// than at every start of cryo, which each dump and restore pays: a table of
// function pointers per library, filled once (any thread).
#pragma once

#include <dlfcn.h>

#include <mutex>
#include <string>

#include "core/sys/result.h"

namespace cryo::dyn {

// The table of `soname`, every function of it resolved by `fill`, or an error
// that names the library and why it cannot serve (ELIBACC).
template <typename Table>
Result<const Table*> load(const char* soname, void (*fill)(void* handle, Table*, const char** missing)) {
  static std::once_flag once;
  static Table table;
  static std::string error;
  std::call_once(once, [&] {
    void* handle = ::dlopen(soname, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
      const char* why = ::dlerror();
      error = std::string(soname) + " cannot be loaded: " + (why ? why : "dlopen failed");
      return;
    }
    const char* missing = nullptr;
    fill(handle, &table, &missing);
    if (missing) error = std::string(soname) + " lacks " + missing;
  });
  if (!error.empty()) return Error(ELIBACC, error);
  return &table;
}

}  // namespace cryo::dyn

// A member per function, of the function's own type.
#define CRYO_DYN_POINTER(name) decltype(&::name) name = nullptr;
// Inside a fill function (handle, t, missing): one function resolved.
#define CRYO_DYN_RESOLVE(name)                                             \
  t->name = reinterpret_cast<decltype(t->name)>(::dlsym(handle, #name)); \
  if (!t->name && !*missing) *missing = #name;
