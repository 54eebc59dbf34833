#include "oci/image/dynlib.h"

namespace cryo::oci::image::dyn {
namespace {

void fill_archive(void* handle, LibArchive* t, const char** missing) { CRYO_LIBARCHIVE_FUNCTIONS(CRYO_DYN_RESOLVE) }

}  // namespace

Result<const LibArchive*> libarchive() { return cryo::dyn::load<LibArchive>("libarchive.so.13", fill_archive); }

}  // namespace cryo::oci::image::dyn
