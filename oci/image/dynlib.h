// libarchive, loaded the first time an image is packed or unpacked rather
// than at every start of cryo: with what it needs in turn (libxml2, ICU,
// zstd, lzma, bzip2, lz4, nettle, acl) it is 11 of cryo's 22 shared
// libraries, and their loading and relocation took ~4 ms of each start here,
// paid by every dump and restore that never packs an image.
#pragma once

#include <archive.h>
#include <archive_entry.h>

#include "core/sys/dynlib.h"
#include "core/sys/result.h"

namespace cryo::oci::image::dyn {

#define CRYO_LIBARCHIVE_FUNCTIONS(X)                                                                              \
  X(archive_entry_filetype) X(archive_entry_free) X(archive_entry_hardlink) X(archive_entry_new)                 \
  X(archive_entry_pathname) X(archive_entry_perm) X(archive_entry_set_filetype) X(archive_entry_set_mtime)       \
  X(archive_entry_set_pathname) X(archive_entry_set_perm) X(archive_entry_set_size) X(archive_errno)             \
  X(archive_error_string) X(archive_free) X(archive_read_data) X(archive_read_new) X(archive_read_next_header)   \
  X(archive_read_open_filename) X(archive_read_support_filter_all) X(archive_read_support_format_raw)            \
  X(archive_read_support_format_tar) X(archive_write_add_filter_gzip) X(archive_write_add_filter_zstd)           \
  X(archive_write_close) X(archive_write_data) X(archive_write_header) X(archive_write_new)                      \
  X(archive_write_open_filename) X(archive_write_set_filter_option) X(archive_write_set_format_pax_restricted)      \
  X(archive_entry_copy_stat) X(archive_entry_set_symlink) X(archive_entry_xattr_add_entry)                       \
  X(archive_read_data_block) X(archive_read_open_fd) X(archive_write_data_block) X(archive_write_disk_new)       \
  X(archive_write_disk_set_options) X(archive_write_finish_entry)

struct LibArchive {
  CRYO_LIBARCHIVE_FUNCTIONS(CRYO_DYN_POINTER)
};

// Loaded once (any thread); the error names the library and why it failed.
Result<const LibArchive*> libarchive();

}  // namespace cryo::oci::image::dyn
