#include "oci/image/dynlib.h"

#include <dlfcn.h>

#include <mutex>

namespace cryo::oci::image::dyn {
namespace {

// Every function of the table, or the name of the first one missing.
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

#define CRYO_DYN_RESOLVE(name)                                                    \
  t->name = reinterpret_cast<decltype(t->name)>(::dlsym(handle, #name));         \
  if (!t->name && !*missing) *missing = #name;

void fill_archive(void* handle, LibArchive* t, const char** missing) { CRYO_LIBARCHIVE_FUNCTIONS(CRYO_DYN_RESOLVE) }

#undef CRYO_DYN_RESOLVE

}  // namespace

Result<const LibArchive*> libarchive() { return load<LibArchive>("libarchive.so.13", fill_archive); }

}  // namespace cryo::oci::image::dyn
