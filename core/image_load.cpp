#include "core/image_load.h"

#include <set>

#include "core/mm/mm_restore.h"
#include "core/mm/parent_images.h"
#include "core/ns/ipc_ns.h"
#include "core/ns/net/net_config.h"
#include "core/mm/premap.h"
#include "core/sys/parallel.h"
#include "core/sys/util.h"
#include "core/task/task_restore.h"

namespace cryo {
namespace {

constexpr size_t kMaxTasks = 4096;

Status validate_tree(const image::Tree& tree) {
  if (tree.tasks_size() == 0) return Error(EINVAL, "the tree is empty");
  if (static_cast<size_t>(tree.tasks_size()) > kMaxTasks) return Error(EINVAL, "the tree has too many tasks");
  std::set<int32_t> ids;
  for (int i = 0; i < tree.tasks_size(); i++) {
    const auto& t = tree.tasks(i);
    if (t.tids_size() == 0 || t.tids(0) != t.pid()) return Error(EINVAL, pid_str(t.pid()) + ": bad thread list");
    if (t.tids_size() > 65536) return Error(EINVAL, pid_str(t.pid()) + ": too many threads");
    // pid 1 is the root's, when it is the init of the tree's own pid namespace.
    int32_t lowest = tree.own_pid_ns() && i == 0 ? 1 : 2;
    for (int32_t tid : t.tids())
      if (tid < lowest || !ids.insert(tid).second) return Error(EINVAL, "pid or tid " + std::to_string(tid) + " is bad or repeated");
    if ((i == 0) != (t.ppid() == 0)) return Error(EINVAL, pid_str(t.pid()) + ": bad parent");
    if (t.state() == image::TaskEntry::ZOMBIE && t.tids_size() != 1) return Error(EINVAL, "a zombie with threads");
  }
  if (tree.own_pid_ns() && tree.tasks(0).pid() != 1)
    return Error(EINVAL, "the tree has a pid namespace of its own but its root is not pid 1");
  if (tree.has_uts())
    for (const std::string* name : {&tree.uts().hostname(), &tree.uts().domainname()})
      if (name->size() > 64 || name->find('\0') != std::string::npos)  // __NEW_UTS_LEN
        return Error(EINVAL, "the uts namespace's host or domain name is not a name");
  if (tree.has_net_ns()) CRYO_TRY(ns::net::validate_config(tree.net_ns()).wrap("its network namespace"));
  return {};
}

// A page run to test against its checksum, and whose it is (an index into
// the names of the owners).
struct RunCheck {
  const image::PageRun* run;
  size_t owner;
};

// Tests the runs, on every CPU once there is enough to test: reading an
// image is mostly this (mapping the page files' pages in and hashing them).
// The first mismatch found fails it.
Status check_runs(const image::ImageDirReader& reader, const std::vector<RunCheck>& checks,
                  const std::vector<std::string>& owners) {
  uint64_t pages = 0;
  for (const auto& c : checks) pages += c.run->npages();
  constexpr uint64_t kParallelPages = (16u << 20) / 4096;
  unsigned threads = pages < kParallelPages ? 1 : std::min<unsigned>(usable_cpus(), static_cast<unsigned>(checks.size()));
  return run_parallel(checks.size(), threads, [&](size_t k) -> Status {
    auto checked = reader.checked_page_run(*checks[k].run);
    if (!checked.ok()) return std::move(checked).error().wrap(owners[checks[k].owner]);
    return {};
  });
}

}  // namespace

Result<LoadedImage> load_image(const image::ImageDirReader& reader, bool lazy) {
  LoadedImage img;
  if (reader.inventory().pages_only())
    return Error(EINVAL, reader.dir() + " is a pre-dump: it holds memory only and cannot be restored (restore the "
                         "dump made with --prev-images-dir naming it)");
  CRYO_TRY(reader.read(image::kTreeName, image::Kind::kTree, &img.tree));
  CRYO_TRY(validate_tree(img.tree).wrap("tree.img"));
  CRYO_TRY(reader.read(image::kFilesName, image::Kind::kFiles, &img.files));
  if (img.tree.has_ipc()) CRYO_TRY(ns::validate_ipc_ns(img.tree.ipc(), img.files).wrap("tree.img: its ipc namespace"));
  for (int i = 0; i < img.files.files_size(); i++)
    if (img.files.files(i).id() != static_cast<uint32_t>(i + 1)) return Error(EINVAL, "files.img: ids out of order");
  for (const auto& t : img.tree.tasks()) {
    if (t.state() == image::TaskEntry::ZOMBIE) continue;
    auto& core = img.cores[t.pid()];
    auto& mm = img.mms[t.pid()];
    CRYO_TRY(reader.read(image::core_name(t.pid()), image::Kind::kCore, &core));
    CRYO_TRY(reader.read(image::mm_name(t.pid()), image::Kind::kMm, &mm));
    CRYO_TRY(mm::expand_parent_pages(reader, &mm).wrap(image::mm_name(t.pid())));
    std::vector<int32_t> tids(t.tids().begin(), t.tids().end());
    CRYO_TRY(task::validate_process(core, tids).wrap(image::core_name(t.pid())));
    CRYO_TRY(mm::validate_mm(mm, img.files, img.tree.has_ipc() ? &img.tree.ipc() : nullptr).wrap(image::mm_name(t.pid())));
    for (const auto& fd : core.fds())
      if (fd.file_id() == 0 || fd.file_id() > static_cast<uint32_t>(img.files.files_size()))
        return Error(EINVAL, image::core_name(t.pid()) + ": fd " + std::to_string(fd.fd()) + " names an unknown file");
  }
  // Pages shared with a parent lie where the parent has them too.
  for (const auto& t : img.tree.tasks()) {
    auto mm = img.mms.find(t.pid());
    if (mm == img.mms.end()) continue;
    auto parent = img.mms.find(t.ppid());
    CRYO_TRY(mm::validate_inherited(mm->second, parent == img.mms.end() ? nullptr : &parent->second)
                 .wrap(image::mm_name(t.pid())));
  }
  // A pidfd names a process or thread of the tree.
  std::set<int32_t> ids;
  for (const auto& t : img.tree.tasks())
    for (int32_t tid : t.tids()) ids.insert(tid);
  for (const auto& f : img.files.files())
    if (f.kind() == image::FileDesc::PIDFD && !ids.count(f.pidfd_target()))
      return Error(EINVAL, "files.img: pidfd " + std::to_string(f.id()) + " names a task outside the tree");
  // Watch descriptors are reached by counting up to them at restore.
  for (const auto& f : img.files.files())
    for (const auto& w : f.inotify().watches())
      if (w.wd() < 1 || w.wd() > (1 << 22))
        return Error(EINVAL, "files.img: inotify " + std::to_string(f.id()) + " has a bad watch descriptor");
  // An epoll's registrations are made again by its owner, through the
  // owner's own fds: it must be a live process holding the epoll and them.
  for (const auto& f : img.files.files()) {
    if (f.kind() != image::FileDesc::EPOLL) continue;
    std::string what = "files.img: epoll " + std::to_string(f.id());
    auto owner = img.cores.find(f.epoll().owner());
    if (owner == img.cores.end()) return Error(EINVAL, what + " names an owner that is not a live process of the tree");
    std::set<int> fds;
    bool holds = false;
    for (const auto& fd : owner->second.fds()) {
      fds.insert(fd.fd());
      holds = holds || fd.file_id() == f.id();
    }
    if (!holds) return Error(EINVAL, what + ": its owner does not hold it");
    for (const auto& t : f.epoll().targets())
      if (!fds.count(t.fd())) return Error(EINVAL, what + " watches fd " + std::to_string(t.fd()) + ", which its owner lacks");
  }
  // Every page run against its checksum (listed here, checked at the end on
  // every CPU): a corrupt image must fail before the first task exists. Its
  // page count must not wrap when made bytes.
  std::vector<RunCheck> checks;
  std::vector<std::string> owners;  // what each check's run belongs to
  auto check_run = [&](const image::PageRun& run) -> Status {
    if (run.npages() > (1ULL << 40) / 4096)
      return Error(EINVAL, "a page run of " + std::to_string(run.npages()) + " pages");
    if (run.checked()) return {};  // a slice of a run checked whole by expand_parent_pages
    checks.push_back({&run, owners.size() - 1});
    return {};
  };
  for (const auto& [pid, mm] : img.mms) {
    owners.push_back(image::mm_name(pid));
    int vi = 0;
    for (const auto& run : mm.pages()) {
      while (vi < mm.vmas_size() && mm.vmas(vi).end() <= run.addr()) vi++;
      bool lazy_vma = vi < mm.vmas_size() && mm.vmas(vi).start() <= run.addr() && mm::can_be_lazy(mm.vmas(vi));
      if (run.remote()) {  // a lazy migration's: the source serves it to the lazy-pages daemon
        if (!lazy_vma || run.level() != 0)
          return Error(EINVAL, image::mm_name(pid) + ": a remote page run at " + std::to_string(run.addr()) +
                                   " lies where the restore must write the pages itself");
        if (!lazy)
          return Error(EINVAL, "the image's memory stays with the dump that made it (dump --lazy-pages): restore it "
                               "with --lazy-pages while `cryo lazy-pages --page-server` brings it from that source");
        continue;
      }
      if (lazy && lazy_vma) {
        if (run.npages() > (1ULL << 40) / 4096) return Error(EINVAL, "a page run of " + std::to_string(run.npages()) + " pages");
        CRYO_TRY(reader.run_bytes(run).wrap(image::mm_name(pid)));  // inside the file
        continue;
      }
      CRYO_TRY(check_run(run).wrap(image::mm_name(pid)));
    }
  }
  owners.push_back("shared memory");
  for (const auto& shmem : img.files.shmems())
    for (const auto& run : shmem.pages()) CRYO_TRY(check_run(run).wrap(owners.back()));
  owners.push_back("bytes of page files no process names");
  for (const auto& run : reader.inventory().superseded_pages()) {
    if (run.level() != 0 || run.checked() || run.remote())
      return Error(EINVAL, "inventory.img: a superseded page run names a level (corrupt)");
    CRYO_TRY(check_run(run).wrap(owners.back()));
  }
  std::set<uint64_t> contents;
  for (const auto& c : img.files.contents()) {
    if (c.id() == 0 || !contents.insert(c.id()).second) return Error(EINVAL, "files.img: a content id is bad or repeated");
    owners.push_back("the data of " + c.name());
    for (const auto& run : c.pages()) CRYO_TRY(check_run(run).wrap(owners.back()));
  }
  for (const auto& f : img.files.files())
    if (f.content_id() != 0 && !contents.count(f.content_id()))
      return Error(EINVAL, "files.img: file " + std::to_string(f.id()) + " names a content the image lacks");
  CRYO_TRY(check_runs(reader, checks, owners));
  return img;
}


}  // namespace cryo
