#include "runtime/criu_rpc/swrk.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstring>
#include <vector>

#include "core/features.h"
#include "core/files/tty.h"
#include "core/image/image.h"
#include "core/sys/fd.h"
#include "core/sys/log.h"
#include "oci/sync.h"
#include "runtime/criu_rpc/criu_rpc.pb.h"
#include "runtime/criu_rpc/request.h"
#include "runtime/process_verbs.h"

namespace cryo::cli::criu_rpc {
namespace {

namespace rpc = cryo::criurpc;

// One connection: the socket and the process at its other end, whose
// descriptors the requests name.
class Session {
 public:
  Session(int fd, pid_t caller) : fd_(fd), caller_(caller) {}

  // The next request; nullopt at the end of the connection (or on a message
  // that is no criu_req, after answering it).
  Result<std::optional<rpc::criu_req>> receive() {
    // SOCK_SEQPACKET keeps each message whole: peek at its size first.
    std::vector<char> buffer(64 * 1024);
    for (;;) {
      ssize_t n = ::recv(fd_, buffer.data(), buffer.size(), MSG_PEEK | MSG_TRUNC);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return errno_error("reading a request");
      if (n == 0) return std::optional<rpc::criu_req>();
      if (static_cast<size_t>(n) > buffer.size()) {
        buffer.resize(static_cast<size_t>(n));
        continue;
      }
      n = ::recv(fd_, buffer.data(), buffer.size(), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return errno_error("reading a request");
      rpc::criu_req req;
      if (!req.ParseFromArray(buffer.data(), static_cast<int>(n))) return Error(EBADMSG, "a message that is no criu_req");
      return std::optional<rpc::criu_req>(std::move(req));
    }
  }

  // Sends resp, with fd passed along (SCM_RIGHTS) when it is not -1.
  Status send(const rpc::criu_resp& resp, int fd = -1) {
    std::string bytes;
    if (!resp.SerializeToString(&bytes)) return Error("serializing a response");
    if (fd >= 0) return oci::send_fd(fd_, fd, bytes);
    while (::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) < 0)
      if (errno != EINTR) return errno_error("sending a response");
    return {};
  }

  // CRIU's notification of an action-script stage: the caller answers each
  // with notify_success (runc runs its hooks, writes the id maps, records
  // the restored pid...). orphan-pts-master carries the new console's master.
  Status notify(const std::string& script, pid_t pid, int fd = -1) {
    rpc::criu_resp resp;
    resp.set_type(rpc::NOTIFY);
    resp.set_success(true);
    resp.mutable_notify()->set_script(script);
    if (pid > 0) resp.mutable_notify()->set_pid(pid);
    log::debug("notify " + script + (pid > 0 ? " (pid " + std::to_string(pid) + ")" : ""));
    CRYO_TRY(send(resp, fd).wrap("notify " + script));
    CRYO_ASSIGN(auto answer, receive().wrap("notify " + script));
    if (!answer) return Error(ECONNRESET, "notify " + script + ": the caller closed the connection");
    if (answer->type() != rpc::NOTIFY || !answer->notify_success())
      return Error(ECANCELED, "notify " + script + ": the caller answered that it failed");
    return {};
  }

  std::string caller_fd_path(int fd) const { return "/proc/" + std::to_string(caller_) + "/fd/" + std::to_string(fd); }

  // A descriptor of the caller's as a path: the directory it names when
  // that is the same directory, else the descriptor through /proc.
  Result<std::string> caller_dir(int fd) const {
    std::string proc = "/proc/" + std::to_string(caller_) + "/fd/" + std::to_string(fd);
    struct stat via;
    if (::stat(proc.c_str(), &via) < 0) return errno_error("descriptor " + std::to_string(fd) + " of the caller (pid " + std::to_string(caller_) + ")");
    if (!S_ISDIR(via.st_mode)) return Error(ENOTDIR, "descriptor " + std::to_string(fd) + " of the caller is not a directory");
    char link[PATH_MAX];
    ssize_t n = ::readlink(proc.c_str(), link, sizeof link - 1);
    if (n > 0) {
      std::string path(link, static_cast<size_t>(n));
      struct stat direct;
      if (::stat(path.c_str(), &direct) == 0 && direct.st_dev == via.st_dev && direct.st_ino == via.st_ino) return path;
    }
    return proc;
  }

 private:
  int fd_;
  pid_t caller_;
};

rpc::criu_resp answer(rpc::criu_req_type type, bool success) {
  rpc::criu_resp resp;
  resp.set_type(type);
  resp.set_success(success);
  return resp;
}

// cr_errno: the error's errno, else `fallback` (a refusal carries none).
rpc::criu_resp failure(rpc::criu_req_type type, const Error& error, int fallback = EINVAL) {
  // runc quotes the lines of the log that hold "Error"; the message goes
  // there and into the answer.
  log::error("Error: " + error.message());
  auto resp = answer(type, false);
  resp.set_cr_errno(error.code() ? error.code() : fallback);
  resp.set_cr_errmsg(error.message());
  return resp;
}

rpc::criu_resp version() {
  auto resp = answer(rpc::VERSION, true);
  resp.mutable_version()->set_major_number(kCriuMajor);
  resp.mutable_version()->set_minor_number(kCriuMinor);
  resp.mutable_version()->set_name("cryo " CRYO_VERSION);
  return resp;
}

rpc::criu_resp check() {
  std::string missing;
  for (const auto& f : probe_features())
    if (f.required && !f.present) missing += (missing.empty() ? "" : ", ") + f.name;
  if (missing.empty()) return answer(rpc::CHECK, true);
  return failure(rpc::CHECK, Error(ENOSYS, "cryo cannot work on this system: missing " + missing + " (cryo check)"));
}

// What cryo has of what CRIU's feature check asks about.
rpc::criu_resp feature_check() {
  auto resp = answer(rpc::FEATURE_CHECK, true);
  auto* f = resp.mutable_features();
  // PRE_DUMP and a dump's parent_img work where the kernel can track writes
  // (what `cryo check --feature mem_dirty_track` says).
  bool tracking = false;
  auto probe = criu::probe_for_feature("mem_dirty_track");
  for (const auto& feature : probe_features())
    if (probe && feature.name == *probe) tracking = feature.present;
  f->set_mem_track(tracking);
  // runc asks this before checkpoint --lazy-pages (a dump serving the frozen
  // tree's pages, which needs nothing of the kernel), the restore that takes
  // them needs userfaultfd.
  bool uffd = false;
  for (const auto& feature : probe_features())
    if (feature.name == "userfaultfd") uffd = feature.present;
  f->set_lazy_pages(uffd);
  f->set_pidfd_store(false);  // cryo keeps no pidfd store: the caller must not hand it one
  return resp;
}

// Opens the request's log (log_file in the work directory) early, so that
// a refusal reaches it too, where runc looks for it.
void open_log(const rpc::criu_opts& opts, Session& session) {
  if (!opts.has_log_file() || opts.log_file().find('/') != std::string::npos) return;
  auto dir = session.caller_dir(opts.has_work_dir_fd() ? opts.work_dir_fd() : opts.images_dir_fd());
  if (!dir.ok()) return;
  log::set_verbosity(opts.log_level());
  if (auto st = log::open_file(*dir + "/" + opts.log_file()); !st.ok()) log::warn(st.error().message());
}

// With notify_scripts, the caller hears of every action-script stage.
void add_notifier(const rpc::criu_opts& opts, Session& session, hooks::Actions& actions) {
  if (!opts.notify_scripts()) return;
  actions.add_callback(
      [&session](hooks::Action action, pid_t root) { return session.notify(std::string(hooks::name(action)), root); });
}

// A dump or a pre-dump: the same options (CRIU takes every option with
// every command); a pre-dump acts on those of memory, and the tree runs on.
rpc::criu_resp dump(const rpc::criu_req& req, Session& session) {
  bool pre = req.type() == rpc::PRE_DUMP;
  bool lazy = req.opts().lazy_pages();
  open_log(req.opts(), session);
  if (pre && lazy)
    return failure(req.type(), Error("criu_opts.lazy_pages: a pre-dump keeps no frozen tree to serve pages from "
                                     "(a DUMP with lazy_pages does)"));
  auto args = parse_request(req.opts(), criu::kDump, [&](int fd) { return session.caller_dir(fd); });
  if (!args.ok()) return failure(req.type(), args.error());
  auto adjust = [&](DumpOptions& o) {
    add_notifier(req.opts(), session, o.actions);
    o.external_mounts_optional = true;  // ext_mnt is a map: runc lists devices and masks that are no mounts
    // The console of a terminal container: its master is the caller's (runc
    // gave it to the console socket); the restore makes a new pair.
    if (req.opts().orphan_pts_master())
      if (std::string key = files::stdio_terminal_key(req.opts().pid()); !key.empty()) o.external_ttys.push_back(key);
    // A lazy dump serves from here on: the caller hears it as CRIU tells it,
    // a zero byte on its status fd and a status-ready notification (runc
    // writes its own --status-fd on that).
    if (lazy)
      o.on_lazy_ready = [&req, &session](int port) {
        log::info("serving the tree's memory at port " + std::to_string(port));
        if (req.opts().has_status_fd()) {
          auto path = session.caller_fd_path(req.opts().status_fd());
          UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
          char zero = 0;
          if (!fd || ::write(fd.get(), &zero, 1) != 1)
            log::warn("status_fd " + std::to_string(req.opts().status_fd()) + " of the caller: " + std::strerror(errno));
        }
        if (req.opts().notify_scripts())
          if (auto st = session.notify("status-ready", 0); !st.ok()) log::warn(st.error().message());
      };
  };
  auto result = pre ? pre_dump_from_args(*args, adjust) : dump_from_args(*args, adjust);
  if (!result.ok()) return failure(req.type(), result.error());
  auto resp = answer(req.type(), true);
  resp.mutable_dump()->set_restored(false);
  return resp;
}

rpc::criu_resp restore(const rpc::criu_req& req, Session& session) {
  open_log(req.opts(), session);
  auto args = parse_request(req.opts(), criu::kRestore, [&](int fd) { return session.caller_dir(fd); });
  if (!args.ok()) return failure(rpc::RESTORE, args.error());
  // The service returns once the tree runs: the tree stays behind it. Its
  // root is cryo's child until cryo exits, then the caller's when the
  // caller is a child subreaper (runc is: what rst_sibling is for).
  args->values_["restore-detached"] = {""};
  auto result = restore_from_args(*args, [&](RestoreOptions& o) {
    add_notifier(req.opts(), session, o.actions);
    o.external_mounts_optional = true;
    if (req.opts().orphan_pts_master())
      o.orphan_pts_master = [&session](int master) { return session.notify("orphan-pts-master", 0, master); };
  });
  if (!result.ok()) return failure(rpc::RESTORE, result.error());
  auto resp = answer(rpc::RESTORE, true);
  resp.mutable_restore()->set_pid(result->root);
  return resp;
}

rpc::criu_resp refuse(rpc::criu_req_type type, const std::string& why) {
  return failure(type, Error(why), EOPNOTSUPP);
}

rpc::criu_resp serve_one(const rpc::criu_req& req, Session& session) {
  switch (req.type()) {
    case rpc::VERSION: return version();
    case rpc::CHECK: return check();
    case rpc::FEATURE_CHECK: return feature_check();
    case rpc::DUMP:
    case rpc::PRE_DUMP: return dump(req, session);
    case rpc::RESTORE: return restore(req, session);
    case rpc::SINGLE_PRE_DUMP:
      return refuse(req.type(), "single-pre-dump is not supported: a pre-dump leaves the tree's writes tracked for "
                                "the next dump (PRE_DUMP)");
    case rpc::PAGE_SERVER:
    case rpc::PAGE_SERVER_CHLD:
      return refuse(req.type(), "page-server is not supported yet: pages go to the image directory only");
    case rpc::CPUINFO_DUMP:
    case rpc::CPUINFO_CHECK:
      return refuse(req.type(), "cpuinfo is not supported: cryo saves no CPU description and checks none");
    case rpc::WAIT_PID: return refuse(req.type(), "wait-pid: cryo starts no page server to wait for");
    case rpc::NOTIFY: return refuse(req.type(), "a NOTIFY answer came with no notification asked");
    case rpc::EMPTY: return refuse(req.type(), "an empty request");
  }
  return refuse(req.type(), "request type " + std::to_string(req.type()) + " is not known to cryo");
}

}  // namespace

int serve(int fd) {
  // The caller may go away at any time: a write then fails, it does not kill.
  ::signal(SIGPIPE, SIG_IGN);
  // stdio may be what a restored tree inherits (runc hands the container's
  // over): cryo writes nothing there, only into the request's log.
  log::set_stderr(false);
  struct ucred peer = {};
  socklen_t len = sizeof peer;
  pid_t caller = ::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &len) == 0 && peer.pid > 0 ? peer.pid : ::getppid();
  Session session(fd, caller);
  bool last_ok = true;
  for (;;) {
    auto req = session.receive();
    if (!req.ok()) {
      if (req.error().code() != EBADMSG) return 1;
      (void)session.send(failure(rpc::EMPTY, req.error()));
      last_ok = false;
      continue;
    }
    if (!*req) return last_ok ? 0 : 1;
    auto resp = serve_one(**req, session);
    last_ok = resp.success();
    if (!session.send(resp).ok()) return 1;
  }
}

}  // namespace cryo::cli::criu_rpc
