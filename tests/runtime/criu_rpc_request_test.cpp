#include "runtime/criu_rpc/request.h"

#include <doctest/doctest.h>
#include <sched.h>

#include <algorithm>

using namespace cryo;
using namespace cryo::cli;
namespace rpc = cryo::criurpc;

namespace {

Result<std::string> fd_path(int fd) { return "/caller/fd/" + std::to_string(fd); }

bool has_words(const std::vector<std::string>& argv, std::vector<std::string> words) {
  return std::search(argv.begin(), argv.end(), words.begin(), words.end()) != argv.end();
}

// What runc 1.1 sends for `runc checkpoint` of a container with a bind mount.
rpc::criu_opts runc_dump() {
  rpc::criu_opts o;
  o.set_images_dir_fd(7);
  o.set_work_dir_fd(8);
  o.set_log_level(4);
  o.set_log_file("dump.log");
  o.set_root("/var/lib/rootfs");
  o.set_manage_cgroups(true);
  o.set_manage_cgroups_mode(rpc::DEFAULT);
  o.set_notify_scripts(true);
  o.set_pid(1234);
  o.set_shell_job(false);
  o.set_leave_running(false);
  o.set_tcp_established(false);
  o.set_ext_unix_sk(false);
  o.set_file_locks(false);
  o.set_empty_ns(0);
  o.set_orphan_pts_master(true);
  o.set_auto_dedup(false);
  o.set_lazy_pages(false);
  o.set_config_file("/no/such/runc.conf");
  o.set_freeze_cgroup("/sys/fs/cgroup/freezer/ct");
  auto* m = o.add_ext_mnt();
  m->set_key("/etc/hosts");
  m->set_val("/etc/hosts");
  return o;
}

}  // namespace

TEST_CASE("runc's checkpoint request is CRIU's command line") {
  auto argv = criu_rpc::command_line(runc_dump(), criu::kDump, fd_path);
  REQUIRE(argv.ok());
  CHECK(has_words(*argv, {"--images-dir", "/caller/fd/7"}));
  CHECK(has_words(*argv, {"--work-dir", "/caller/fd/8"}));
  CHECK(has_words(*argv, {"--tree", "1234"}));
  CHECK(has_words(*argv, {"-v4"}));
  CHECK(has_words(*argv, {"--log-file", "dump.log"}));
  CHECK(has_words(*argv, {"--external", "mnt[/etc/hosts]:/etc/hosts"}));
  CHECK(has_words(*argv, {"--freeze-cgroup", "/sys/fs/cgroup/freezer/ct"}));
  CHECK(has_words(*argv, {"--manage-cgroups"}));
  // Flags sent as false are CRIU's defaults; a missing config file is skipped, as CRIU does.
  for (const char* absent : {"--shell-job", "--leave-running", "--lazy-pages", "--config", "--empty-ns"})
    CHECK_MESSAGE(std::find(argv->begin(), argv->end(), absent) == argv->end(), absent);
  auto args = criu_rpc::parse_request(runc_dump(), criu::kDump, fd_path);
  REQUIRE_MESSAGE(args.ok(), args.error().message());
  CHECK(args->get_or("tree", "") == "1234");
}

TEST_CASE("the page server of a dump request is --page-server --address --port") {
  auto o = runc_dump();
  o.mutable_ps()->set_address("10.0.0.2");
  o.mutable_ps()->set_port(27000);
  auto argv = criu_rpc::command_line(o, criu::kDump, fd_path);
  REQUIRE(argv.ok());
  CHECK(has_words(*argv, {"--page-server", "--address", "10.0.0.2", "--port", "27000"}));
  auto args = criu_rpc::parse_request(o, criu::kDump, fd_path);
  REQUIRE_MESSAGE(args.ok(), args.error().message());
  CHECK(args->has("page-server"));
  o.mutable_ps()->set_fd(5);
  CHECK(criu_rpc::parse_request(o, criu::kDump, fd_path).error().message().find("criu_opts.ps") == 0);
}

TEST_CASE("a lazy dump request is dump --lazy-pages serving at the page server's address") {
  // runc's checkpoint --lazy-pages --page-server 10.0.0.2:27000 --status-fd 3.
  auto o = runc_dump();
  o.set_lazy_pages(true);
  o.mutable_ps()->set_address("10.0.0.2");
  o.mutable_ps()->set_port(27000);
  o.set_status_fd(3);
  auto argv = criu_rpc::command_line(o, criu::kDump, fd_path);
  REQUIRE(argv.ok());
  CHECK(has_words(*argv, {"--address", "10.0.0.2", "--port", "27000"}));
  CHECK(has_words(*argv, {"--lazy-pages"}));
  // The page server is the dump itself; the status fd is the caller's, told by the door.
  for (const char* absent : {"--page-server", "--status-fd"})
    CHECK_MESSAGE(std::find(argv->begin(), argv->end(), absent) == argv->end(), absent);
  auto args = criu_rpc::parse_request(o, criu::kDump, fd_path);
  REQUIRE_MESSAGE(args.ok(), args.error().message());
  CHECK(args->has("lazy-pages"));
  CHECK(args->get_or("port", "") == "27000");
}

TEST_CASE("a field cryo cannot honour is refused by its name") {
  auto o = runc_dump();
  o.set_empty_ns(CLONE_NEWNET | CLONE_NEWUTS);
  CHECK(criu_rpc::parse_request(o, criu::kDump, fd_path).error().message().find("criu_opts.empty_ns") == 0);
  o = runc_dump();
  o.add_external("file[12:34]");
  CHECK(criu_rpc::parse_request(o, criu::kDump, fd_path).error().message().find("criu_opts.external") == 0);
  o = runc_dump();
  o.set_pidfd_store_sk(5);
  CHECK(criu_rpc::parse_request(o, criu::kDump, fd_path).error().message().find("criu_opts.pidfd_store_sk") == 0);
  o = runc_dump();
  o.clear_pid();
  CHECK(criu_rpc::parse_request(o, criu::kDump, fd_path).error().message().find("criu_opts.pid") == 0);
  o = runc_dump();
  o.set_log_file("../elsewhere.log");
  CHECK(criu_rpc::parse_request(o, criu::kDump, fd_path).error().message().find("criu_opts.log_file") == 0);
  // A field of a newer CRIU: refused by its number.
  o = runc_dump();
  o.GetReflection()->MutableUnknownFields(&o)->AddVarint(200, 1);
  CHECK(criu_rpc::parse_request(o, criu::kDump, fd_path).error().message().find("field 200") != std::string::npos);
}

TEST_CASE("runc's restore request: cgroup roots, inherited fds, namespaces") {
  rpc::criu_opts o;
  o.set_images_dir_fd(7);
  o.set_evasive_devices(true);
  o.set_rst_sibling(true);
  o.set_root("/run/runc/ct/criu-root");
  o.set_manage_cgroups_mode(rpc::SOFT);
  auto* root = o.add_cg_root();
  root->set_ctrl("memory");
  root->set_path("/ct");
  root = o.add_cg_root();
  root->set_ctrl("");
  root->set_path("/");
  auto* in = o.add_inherit_fd();
  in->set_key("pipe:[4242]");
  in->set_fd(1);
  auto* ns = o.add_join_ns();
  ns->set_ns("net");
  ns->set_ns_file("/run/netns/ct");
  auto* m = o.add_ext_mnt();
  m->set_key("/etc/hosts");
  m->set_val("/host/hosts");
  auto argv = criu_rpc::command_line(o, criu::kRestore, fd_path);
  REQUIRE(argv.ok());
  CHECK(has_words(*argv, {"--cgroup-root", "memory:/ct"}));
  CHECK(has_words(*argv, {"--cgroup-root", "/"}));
  CHECK(has_words(*argv, {"--inherit-fd", "fd[1]:pipe:[4242]"}));
  CHECK(has_words(*argv, {"--join-ns", "net:/run/netns/ct"}));
  CHECK(has_words(*argv, {"--manage-cgroups=soft"}));
  CHECK(has_words(*argv, {"--external", "mnt[/etc/hosts]:/host/hosts"}));
  auto args = criu_rpc::parse_request(o, criu::kRestore, fd_path);
  REQUIRE_MESSAGE(args.ok(), args.error().message());
  ns->set_ns("uts");
  auto refused = criu_rpc::parse_request(o, criu::kRestore, fd_path);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().message().find("criu_opts.join_ns") == 0);
  o.clear_join_ns();
  o.set_pid(12);
  CHECK(criu_rpc::parse_request(o, criu::kRestore, fd_path).error().message().find("criu_opts.pid") == 0);
}
