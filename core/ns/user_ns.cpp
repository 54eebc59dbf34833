#include "core/ns/user_ns.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <vector>

#include "core/sys/io.h"
#include "core/sys/kernel_abi.h"
#include "core/sys/proc.h"
#include "core/sys/util.h"

namespace cryo::ns {
namespace {

using IdMapField = google::protobuf::RepeatedPtrField<image::IdMapEntry>;

std::string ns_path(pid_t pid, const std::string& kind) { return "/proc/" + std::to_string(pid) + "/ns/" + kind; }

Result<struct stat> stat_fd(int fd, const std::string& what) {
  struct stat st;
  if (::fstat(fd, &st) < 0) return errno_error("fstat " + what);
  return st;
}

bool same(const struct stat& a, const struct stat& b) { return a.st_dev == b.st_dev && a.st_ino == b.st_ino; }

// Another namespace an nsfs ioctl (NS_GET_USERNS, NS_GET_PARENT) gives for fd.
Result<struct stat> related(int fd, unsigned long request, const std::string& what) {
  UniqueFd other(::ioctl(fd, request));
  if (!other.valid()) return errno_error(what);
  return stat_fd(other.get(), what);
}

// Ids of one kind (uids or gids) through one map, one way.
class Ids {
 public:
  Ids(const IdMapField& map, bool inward, const char* kind) : map_(map), inward_(inward), kind_(kind) {}

  // Fails naming `what` when the map does not cover the id.
  Status apply(uint32_t* id, const std::string& what) const {
    auto got = inward_ ? to_inside(map_, *id) : to_outside(map_, *id);
    if (!got)
      return Error(what + ": " + kind_ + " " + std::to_string(*id) +
                   (inward_ ? " is not mapped in the tree's user namespace (not supported)"
                            : " is not mapped in the user namespace the image gives"));
    *id = *got;
    return {};
  }

  // As the tree sees an id the map does not cover: the overflow id.
  void apply_or_overflow(uint32_t* id) const {
    auto got = inward_ ? to_inside(map_, *id) : to_outside(map_, *id);
    *id = got ? *got : 65534;
  }

 private:
  const IdMapField& map_;
  bool inward_;
  const char* kind_;
};

struct Owners {
  Ids uid, gid;
  template <class Message>
  Status owner(Message* m, const std::string& what) const {
    uint32_t u = m->uid(), g = m->gid();
    CRYO_TRY(uid.apply(&u, what));
    CRYO_TRY(gid.apply(&g, what));
    m->set_uid(u);
    m->set_gid(g);
    return {};
  }
  template <class Message>
  Status creator(Message* m, const std::string& what) const {
    uint32_t u = m->cuid(), g = m->cgid();
    CRYO_TRY(uid.apply(&u, what + " (its creator)"));
    CRYO_TRY(gid.apply(&g, what + " (its creator)"));
    m->set_cuid(u);
    m->set_cgid(g);
    return {};
  }
};

Status creds_view(const Owners& o, image::Creds* c, const std::string& what) {
  for (int i = 0; i < c->uids_size(); i++) {
    uint32_t id = c->uids(i);
    CRYO_TRY(o.uid.apply(&id, what));
    c->set_uids(i, id);
  }
  for (int i = 0; i < c->gids_size(); i++) {
    uint32_t id = c->gids(i);
    CRYO_TRY(o.gid.apply(&id, what));
    c->set_gids(i, id);
  }
  for (int i = 0; i < c->groups_size(); i++) {
    uint32_t id = c->groups(i);
    CRYO_TRY(o.gid.apply(&id, what + ": supplementary group"));
    c->set_groups(i, id);
  }
  return {};
}

// What cryo makes from outside on restore, and reads from outside on dump.
Status files_view(const Owners& o, image::Files* files) {
  for (auto& c : *files->mutable_contents())
    CRYO_TRY(o.owner(&c, (c.memfd() ? "memfd " : "deleted file ") + c.name()));
  for (auto& s : *files->mutable_sysv_shms()) CRYO_TRY(o.owner(&s, "System V segment " + std::to_string(s.id())));
  for (auto& p : *files->mutable_ptys()) CRYO_TRY(o.owner(&p, "/dev/pts/" + std::to_string(p.index())));
  for (auto& f : *files->mutable_files()) {
    if (!f.has_socket() || !f.socket().local().has_file()) continue;
    auto* local = f.mutable_socket()->mutable_local();
    uint32_t u = local->file_uid(), g = local->file_gid();
    std::string what = "the socket file " + local->addr();
    CRYO_TRY(o.uid.apply(&u, what));
    CRYO_TRY(o.gid.apply(&g, what));
    local->set_file_uid(u);
    local->set_file_gid(g);
  }
  return {};
}

// A filesystem's uid= and gid= options (tmpfs, devpts): mountinfo shows
// them as the host sees them, a mount from inside the namespace reads them
// as the tree does.
Status options_view(const Owners& o, image::Mount* m) {
  std::string out, rest = m->options();
  while (!rest.empty()) {
    size_t comma = rest.find(',');
    std::string word = rest.substr(0, comma);
    rest = comma == std::string::npos ? "" : rest.substr(comma + 1);
    const Ids* ids = word.starts_with("uid=") ? &o.uid : word.starts_with("gid=") ? &o.gid : nullptr;
    std::string number = ids ? word.substr(4) : "";
    if (ids && !number.empty() && number.size() < 11 && number.find_first_not_of("0123456789") == std::string::npos) {
      uint32_t id = static_cast<uint32_t>(std::stoul(number));
      CRYO_TRY(ids->apply(&id, "the " + word.substr(0, 3) + " option of the mount at " + m->mount_point()));
      word = word.substr(0, 4) + std::to_string(id);
    }
    out += (out.empty() ? "" : ",") + word;
  }
  m->set_options(out);
  return {};
}

Status mounts_view(const Owners& o, image::MountNs* mounts) {
  for (auto& m : *mounts->mutable_mounts()) {
    for (auto& n : *m.mutable_nodes()) CRYO_TRY(o.owner(&n, m.mount_point() + "/" + n.path()));
    CRYO_TRY(options_view(o, &m));
  }
  return {};
}

Status ipc_view(const Owners& o, image::IpcNamespace* ipc) {
  for (auto& s : *ipc->mutable_shms()) {
    std::string what = "System V segment " + std::to_string(s.id());
    CRYO_TRY(o.owner(&s, what));
    CRYO_TRY(o.creator(&s, what));
  }
  for (auto& s : *ipc->mutable_sems()) {
    std::string what = "System V semaphore set " + std::to_string(s.id());
    CRYO_TRY(o.owner(&s, what));
    CRYO_TRY(o.creator(&s, what));
  }
  for (auto& q : *ipc->mutable_msg_queues()) {
    std::string what = "System V message queue " + std::to_string(q.id());
    CRYO_TRY(o.owner(&q, what));
    CRYO_TRY(o.creator(&q, what));
  }
  for (auto& q : *ipc->mutable_mqueues()) CRYO_TRY(o.owner(&q, "POSIX message queue /" + q.name()));
  return {};
}

std::vector<image::IdMapEntry> sorted_by(const IdMapField& map, bool inside) {
  std::vector<image::IdMapEntry> v(map.begin(), map.end());
  std::sort(v.begin(), v.end(), [inside](const auto& a, const auto& b) {
    return inside ? a.inside() < b.inside() : a.outside() < b.outside();
  });
  return v;
}

Status validate_map(const IdMapField& map, const char* kind) {
  if (map.empty()) return Error(EINVAL, std::string("the user namespace has no ") + kind + " map");
  if (map.size() > 340) return Error(EINVAL, std::string("the user namespace's ") + kind + " map has over 340 ranges");
  for (const auto& e : map)
    if (e.count() == 0 || uint64_t{e.inside()} + e.count() > (1ULL << 32) || uint64_t{e.outside()} + e.count() > (1ULL << 32))
      return Error(EINVAL, std::string("the user namespace's ") + kind + " map has a bad range");
  for (bool inside : {true, false}) {
    auto v = sorted_by(map, inside);
    for (size_t i = 1; i < v.size(); i++) {
      uint64_t prev_end = uint64_t{inside ? v[i - 1].inside() : v[i - 1].outside()} + v[i - 1].count();
      if ((inside ? v[i].inside() : v[i].outside()) < prev_end)
        return Error(EINVAL, std::string("the user namespace's ") + kind + " map has overlapping ranges");
    }
  }
  return {};
}

std::string map_text(const IdMapField& map) {
  std::string out;
  for (const auto& e : map)
    out += std::to_string(e.inside()) + " " + std::to_string(e.outside()) + " " + std::to_string(e.count()) + "\n";
  return out;
}

Status write_maps(pid_t pid, const image::UserNs& ns) {
  std::string base = "/proc/" + std::to_string(pid) + "/";
  auto put = [&](const std::string& file, const std::string& text) -> Status {
    CRYO_ASSIGN(UniqueFd fd, open_file(base + file, O_WRONLY | O_CLOEXEC));
    return write_all(fd.get(), text).wrap("writing " + file + " of the tree's user namespace");
  };
  // setgroups first: "deny" is only taken before gid_map is written.
  if (ns.setgroups_denied()) CRYO_TRY(put("setgroups", "deny"));
  CRYO_TRY(put("uid_map", map_text(ns.uid_map())));
  return put("gid_map", map_text(ns.gid_map()));
}

// The maker's child side: waits for its maps, unshares what was asked, and
// says so; it is killed once cryo has opened its namespaces.
[[noreturn]] void maker_main(int flags, int go_read, int done_write) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  char c;
  if (::read(go_read, &c, 1) != 1) ::_exit(1);
  int err = 0;
  if (flags && ::unshare(flags) < 0) err = errno;
  (void)!::write(done_write, &err, sizeof err);
  for (;;) ::pause();
}

}  // namespace

Status check_namespace_owners(pid_t root) {
  CRYO_ASSIGN(UniqueFd user, open_file(ns_path(root, "user"), O_RDONLY | O_CLOEXEC));
  CRYO_ASSIGN(struct stat tree_user, stat_fd(user.get(), "the tree's user namespace"));
  CRYO_ASSIGN(UniqueFd own_user, open_file("/proc/self/ns/user", O_RDONLY | O_CLOEXEC));
  CRYO_ASSIGN(struct stat cryo_user, stat_fd(own_user.get(), "cryo's user namespace"));
  if (!same(tree_user, cryo_user)) {
    auto parent = related(user.get(), NS_GET_PARENT, "the parent of the user namespace of " + pid_str(root));
    if (!parent.ok() || !same(*parent, cryo_user))
      return Error(pid_str(root) + " is in a user namespace nested in another one below cryo's (not supported yet: "
                   "only a child of cryo's user namespace is)");
  }
  for (const char* kind : {"pid", "mnt", "net", "ipc", "uts", "cgroup", "time"}) {
    auto mine = read_link(std::string("/proc/self/ns/") + kind);
    auto theirs = read_link(ns_path(root, kind));
    if (!mine.ok() || !theirs.ok() || *mine == *theirs) continue;  // cryo's own: not the tree's to make
    CRYO_ASSIGN(UniqueFd fd, open_file(ns_path(root, kind), O_RDONLY | O_CLOEXEC));
    auto owner = related(fd.get(), NS_GET_USERNS, std::string("the owner of the ") + kind + " namespace of " + pid_str(root));
    if (!owner.ok()) return std::move(owner).error();
    if (!same(*owner, tree_user))
      return Error(pid_str(root) + ": its " + kind + " namespace is owned by another user namespace than " +
                   (same(tree_user, cryo_user) ? "the tree's (cryo's)" : "the tree's") +
                   " (not supported: the restore makes every namespace of the tree in the tree's user namespace)");
  }
  return {};
}

Result<std::vector<image::IdMapEntry>> parse_id_map(const std::string& text) {
  std::vector<image::IdMapEntry> out;
  for (auto line : proc::split_lines(text)) {
    unsigned long long in = 0, outside = 0, count = 0;
    std::string copy(line);
    if (std::sscanf(copy.c_str(), "%llu %llu %llu", &in, &outside, &count) != 3)
      return Error(EINVAL, "bad id map line '" + copy + "'");
    auto& e = out.emplace_back();
    e.set_inside(static_cast<uint32_t>(in));
    e.set_outside(static_cast<uint32_t>(outside));
    e.set_count(static_cast<uint32_t>(count));
  }
  return out;
}

Status dump_user_ns(pid_t root, image::UserNs* out) {
  std::string base = "/proc/" + std::to_string(root) + "/";
  for (auto [file, map] : {std::pair{"uid_map", out->mutable_uid_map()}, std::pair{"gid_map", out->mutable_gid_map()}}) {
    CRYO_ASSIGN(std::string text, read_file(base + file));
    CRYO_ASSIGN(auto entries, parse_id_map(text));
    for (auto& e : entries) *map->Add() = std::move(e);
  }
  CRYO_ASSIGN(std::string setgroups, read_file(base + "setgroups"));
  out->set_setgroups_denied(setgroups.starts_with("deny"));
  return validate_user_ns(*out).wrap("the user namespace of " + pid_str(root));
}

Status validate_user_ns(const image::UserNs& ns) {
  CRYO_TRY(validate_map(ns.uid_map(), "uid"));
  return validate_map(ns.gid_map(), "gid");
}

std::optional<uint32_t> to_inside(const IdMapField& map, uint32_t id) {
  for (const auto& e : map)
    if (id >= e.outside() && uint64_t{id} < uint64_t{e.outside()} + e.count()) return e.inside() + (id - e.outside());
  return std::nullopt;
}

std::optional<uint32_t> to_outside(const IdMapField& map, uint32_t id) {
  for (const auto& e : map)
    if (id >= e.inside() && uint64_t{id} < uint64_t{e.inside()} + e.count()) return e.outside() + (id - e.inside());
  return std::nullopt;
}

Status to_tree_view(const image::UserNs& ns, std::map<pid_t, image::Process>* cores, image::Files* files,
                    image::Tree* tree) {
  Owners o{Ids(ns.uid_map(), true, "uid"), Ids(ns.gid_map(), true, "gid")};
  std::map<pid_t, image::Process> none;
  for (auto& [pid, core] : cores ? *cores : none) {
    CRYO_TRY(creds_view(o, core.mutable_creds(), pid_str(pid)));
    for (auto& t : *core.mutable_threads())
      if (t.has_creds()) CRYO_TRY(creds_view(o, t.mutable_creds(), pid_str(pid) + " thread " + std::to_string(t.tid())));
    if (core.has_loginuid() && core.loginuid() != ~0u) {
      uint32_t id = core.loginuid();
      CRYO_TRY(o.uid.apply(&id, pid_str(pid) + ": its login uid"));
      core.set_loginuid(id);
    }
  }
  if (!files) return {};
  CRYO_TRY(files_view(o, files));
  for (auto& f : *files->mutable_files())
    if (f.has_socket() && f.socket().cred_pid()) {  // SO_PEERCRED: what the tree's peer reads
      uint32_t u = f.socket().cred_uid(), g = f.socket().cred_gid();
      o.uid.apply_or_overflow(&u);
      o.gid.apply_or_overflow(&g);
      f.mutable_socket()->set_cred_uid(u);
      f.mutable_socket()->set_cred_gid(g);
    }
  if (tree && tree->has_mount_ns()) CRYO_TRY(mounts_view(o, tree->mutable_mount_ns()));
  if (tree && tree->has_ipc()) CRYO_TRY(ipc_view(o, tree->mutable_ipc()));
  return {};
}

Status to_host_view(const image::UserNs& ns, image::Files* files, image::MountNs* mounts) {
  Owners o{Ids(ns.uid_map(), false, "uid"), Ids(ns.gid_map(), false, "gid")};
  CRYO_TRY(files_view(o, files));
  if (mounts) CRYO_TRY(mounts_view(o, mounts));
  return {};
}

Result<UserNsMaker> UserNsMaker::make(const image::UserNs& ns, int flags) {
  CRYO_TRY(validate_user_ns(ns));
  int go[2], done[2];
  if (::pipe2(go, O_CLOEXEC) < 0) return errno_error("pipe2");
  UniqueFd go_read(go[0]), go_write(go[1]);
  if (::pipe2(done, O_CLOEXEC) < 0) return errno_error("pipe2");
  UniqueFd done_read(done[0]), done_write(done[1]);
  abi::CloneArgs args{};
  args.flags = CLONE_NEWUSER;
  args.exit_signal = SIGCHLD;
  long pid = ::syscall(SYS_clone3, &args, sizeof args);
  if (pid < 0) return errno_error("clone3 with CLONE_NEWUSER");
  if (pid == 0) maker_main(flags, go_read.get(), done_write.get());
  auto reap = [pid] {
    ::kill(static_cast<pid_t>(pid), SIGKILL);
    while (::waitpid(static_cast<pid_t>(pid), nullptr, 0) < 0 && errno == EINTR) {
    }
  };
  done_write.reset();
  Status st = write_maps(static_cast<pid_t>(pid), ns);
  if (!st.ok()) {
    reap();
    return std::move(st).error();
  }
  int err = EIO;
  if (::write(go_write.get(), "g", 1) != 1 || ::read(done_read.get(), &err, sizeof err) != sizeof err || err != 0) {
    reap();
    return Error(err, "making the tree's namespaces inside its new user namespace");
  }
  UserNsMaker made;
  std::string base = "/proc/" + std::to_string(pid) + "/ns/";
  auto open_ns = [&](const char* name, UniqueFd* fd) -> Status {
    CRYO_ASSIGN(*fd, open_file(base + name, O_RDONLY | O_CLOEXEC));
    return {};
  };
  st = open_ns("user", &made.user_);
  if (st.ok() && (flags & CLONE_NEWNET)) st = open_ns("net", &made.net_);
  if (st.ok() && (flags & CLONE_NEWNS)) st = open_ns("mnt", &made.mnt_);
  reap();
  if (!st.ok()) return std::move(st).error();
  return made;
}

std::pair<uid_t, gid_t> host_ids_of_root(const image::UserNs& ns) {
  auto uid = to_outside(ns.uid_map(), 0), gid = to_outside(ns.gid_map(), 0);
  if (!uid && ns.uid_map_size() > 0) uid = ns.uid_map(0).outside();
  if (!gid && ns.gid_map_size() > 0) gid = ns.gid_map(0).outside();
  return {uid.value_or(0), gid.value_or(0)};
}

Status enter_user_ns(const image::UserNs& ns, const image::Creds& root_creds, int user_fd) {
  // Groups as the host sees them: a namespace whose setgroups is denied
  // keeps the ones its first process brought, for good.
  std::vector<gid_t> groups;
  for (uint32_t g : root_creds.groups()) {
    auto host = to_outside(ns.gid_map(), g);
    if (!host) return Error(EINVAL, "supplementary group " + std::to_string(g) + " is not in the user namespace's map");
    groups.push_back(*host);
  }
  if (::setgroups(groups.size(), groups.data()) < 0) return errno_error("setgroups before joining the user namespace");
  if (::setns(user_fd, CLONE_NEWUSER) < 0) return errno_error("joining the tree's user namespace");
  // Every capability there, whatever ids: become its root where it has one,
  // so that what the stub makes is owned by it.
  if (to_outside(ns.gid_map(), 0) && ::setresgid(0, 0, 0) < 0) return errno_error("setresgid 0 in the user namespace");
  if (to_outside(ns.uid_map(), 0) && ::setresuid(0, 0, 0) < 0) return errno_error("setresuid 0 in the user namespace");
  return {};
}

}  // namespace cryo::ns
