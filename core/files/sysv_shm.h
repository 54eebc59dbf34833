// System V shared memory segments of an image (the host's IPC namespace),
// made ready before the restored tasks attach them with shmat.
#pragma once

#include <vector>

#include "core/image/image.h"
#include "core/image/proto/files.pb.h"
#include "core/sys/result.h"

namespace cryo::files {

// SHM_HUGETLB and the page size for shmget, for a segment of huge pages.
int huge_flags(const image::SysvShm& s);

// Writes the recorded data into segment s.id() of this IPC namespace, which
// has s.size() bytes; zero_first: pages the image left out are zeroed too.
Status fill_segment(const image::SysvShm& s, const image::ImageDirReader& images, bool zero_first);

class SysvSegments {
 public:
  SysvSegments() = default;
  SysvSegments(const SysvSegments&) = delete;
  SysvSegments& operator=(const SysvSegments&) = delete;
  // Unless committed: removes the segments it made.
  ~SysvSegments();

  // Each segment gets its recorded id: the one still there if nothing has it
  // attached (its key and size unchanged), else a new one made with that id
  // (kernel.shm_next_id). Its owner, mode and data become the recorded ones.
  Status prepare(const image::Files& files, const image::ImageDirReader& images);
  // The restore succeeded: segments that were removed at dump time are
  // removed again (they go when their last process detaches).
  Status commit();

 private:
  std::vector<int> made_, to_remove_;
  bool committed_ = false;
};

}  // namespace cryo::files
