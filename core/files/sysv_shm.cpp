#include "core/files/sysv_shm.h"

#include <fcntl.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "core/sys/io.h"

namespace cryo::files {
namespace {

constexpr uint64_t kPage = 4096;

std::string name(const image::SysvShm& s) { return "System V segment " + std::to_string(s.id()); }

// The size of the units the segment is attached in.
uint64_t unit_of(const image::SysvShm& s) { return s.huge_page_size() ? s.huge_page_size() : kPage; }

// Makes a segment with exactly the recorded id.
Status make_with_id(const image::SysvShm& s) {
  if (s.key() != IPC_PRIVATE) {
    int other = ::shmget(s.key(), 0, 0);
    if (other >= 0)
      return Error(EEXIST, name(s) + ": its key " + std::to_string(s.key()) + " now belongs to segment " +
                               std::to_string(other));
  }
  CRYO_ASSIGN(UniqueFd next, open_file("/proc/sys/kernel/shm_next_id", O_WRONLY | O_CLOEXEC));
  CRYO_TRY(write_all(next.get(), std::to_string(s.id())).wrap(name(s) + ": kernel.shm_next_id"));
  int got = ::shmget(s.key(), s.size(), IPC_CREAT | IPC_EXCL | static_cast<int>(s.mode() & 0777) | huge_flags(s));
  if (got < 0) return errno_error(name(s) + ": shmget");
  if (got != s.id()) {
    ::shmctl(got, IPC_RMID, nullptr);
    return Error(EBUSY, name(s) + ": the kernel gave id " + std::to_string(got) + " (another segment was made meanwhile?)");
  }
  return {};
}

}  // namespace

int huge_flags(const image::SysvShm& s) {
  uint64_t huge = s.huge_page_size();
  if (huge == 0 || (huge & (huge - 1))) return 0;
  return SHM_HUGETLB | (__builtin_ctzll(huge) << 26 /* SHM_HUGE_SHIFT */);
}

Status fill_segment(const image::SysvShm& s, const image::ImageDirReader& images, bool reused) {
  void* at = ::shmat(s.id(), nullptr, 0);
  if (at == reinterpret_cast<void*>(-1)) return errno_error(name(s) + ": shmat");
  auto* base = static_cast<uint8_t*>(at);
  uint64_t span = (s.size() + unit_of(s) - 1) / unit_of(s) * unit_of(s);
  Status st;
  if (reused) std::memset(base, 0, s.size());  // pages the image left out are zero
  for (const auto& run : s.pages()) {
    uint64_t bytes = run.npages() * kPage;
    if (run.npages() == 0 || run.addr() % kPage || run.addr() >= span || bytes > span - run.addr()) {
      st = Error(EINVAL, name(s) + ": a page run lies outside it");
      break;
    }
    auto src = images.page_run(run.file(), run.offset(), bytes);
    if (!src.ok()) {
      st = std::move(src).error();
      break;
    }
    std::memcpy(base + run.addr(), *src, std::min(bytes, s.size() - run.addr()));
  }
  ::shmdt(at);
  return st;
}

SysvSegments::~SysvSegments() {
  if (committed_) return;
  for (int id : made_) ::shmctl(id, IPC_RMID, nullptr);
}

Status SysvSegments::prepare(const image::Files& files, const image::ImageDirReader& images) {
  for (const auto& s : files.sysv_shms()) {
    if (s.id() < 0 || s.size() == 0 || s.size() > (1ULL << 40)) return Error(EINVAL, name(s) + ": bad id or size");
    struct shmid_ds ds{};
    bool reused = ::shmctl(s.id(), IPC_STAT, &ds) == 0;
    if (reused) {
      if (ds.shm_segsz != s.size() || ds.shm_perm.__key != s.key())
        return Error(EEXIST, name(s) + " is now another segment (key " + std::to_string(ds.shm_perm.__key) +
                                 ", " + std::to_string(ds.shm_segsz) + " bytes)");
      if (ds.shm_nattch > 0)
        return Error(EBUSY, name(s) + " is attached by " + std::to_string(ds.shm_nattch) +
                                " processes outside the image");
    } else {
      CRYO_TRY(make_with_id(s));
      made_.push_back(s.id());
      if (::shmctl(s.id(), IPC_STAT, &ds) < 0) return errno_error(name(s) + ": IPC_STAT");
    }
    ds.shm_perm.uid = s.uid();
    ds.shm_perm.gid = s.gid();
    ds.shm_perm.mode = static_cast<unsigned short>(s.mode() & 0777);
    if (::shmctl(s.id(), IPC_SET, &ds) < 0) return errno_error(name(s) + ": IPC_SET");
    CRYO_TRY(fill_segment(s, images, reused));
    if (s.removed()) to_remove_.push_back(s.id());
  }
  return {};
}

Status SysvSegments::commit() {
  committed_ = true;
  for (int id : to_remove_)
    if (::shmctl(id, IPC_RMID, nullptr) < 0) return errno_error("removing System V segment " + std::to_string(id));
  return {};
}

}  // namespace cryo::files
