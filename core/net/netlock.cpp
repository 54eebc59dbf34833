#include "core/net/netlock.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include "core/sys/failpoint.h"
#include "core/sys/io.h"
#include "core/sys/log.h"

namespace cryo::net {

constexpr std::string_view kLockPrefix = "cryo-lock-";
namespace {

int g_tools_hold = -1;  // see lock_tools_hold()

// In a forked child about to exec a tool: let it inherit the hold, and put
// it in the network namespace it is to change (-1: cryo's own).
void prepare_tool(int net_ns) {
  if (g_tools_hold >= 0) ::fcntl(g_tools_hold, F_SETFD, 0);
  if (net_ns >= 0 && ::setns(net_ns, CLONE_NEWNET) < 0) ::_exit(126);
}

std::string ip_text(const image::SockAddr& a) {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(a.family() == AF_INET6 ? AF_INET6 : AF_INET, a.addr().data(), buf, sizeof buf);
  return buf;
}

// Runs `nft -f -` with the script on stdin; its output goes to *output.
Status run_nft(int net_ns, const std::string& script, std::string* output = nullptr) {
  int in[2], out[2];
  if (::pipe2(in, O_CLOEXEC) < 0) return errno_error("pipe2");
  if (::pipe2(out, O_CLOEXEC) < 0) return errno_error("pipe2");
  pid_t pid = ::fork();
  if (pid < 0) return errno_error("fork nft");
  if (pid == 0) {
    ::dup2(in[0], 0);
    ::dup2(out[1], 1);
    ::dup2(out[1], 2);
    prepare_tool(net_ns);
    ::execlp("nft", "nft", "-f", "-", nullptr);
    ::_exit(127);
  }
  ::close(in[0]);
  ::close(out[1]);
  Status wrote = write_all(in[1], script);
  ::close(in[1]);
  failpoint("net.nft");  // nft goes on without us: the guard must wait for it
  auto text = read_fd(out[0]);
  ::close(out[0]);
  if (output && text.ok()) *output = *text;
  int status;
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return errno_error("waitpid nft");
  if (!wrote.ok()) return std::move(wrote).error().wrap("nft");
  if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
    return Error(ENOENT, "nft not found (is the nftables package installed?)");
  if (WIFEXITED(status) && WEXITSTATUS(status) == 126) return Error(EIO, "nft could not enter the tree's network namespace");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::string said = text.ok() ? *text : "";
    while (!said.empty() && (said.back() == '\n' || said.back() == ' ')) said.pop_back();
    return Error(EIO, "nft failed" + (said.empty() ? std::string() : ": " + said));
  }
  return {};
}

// Runs a command, its stdout to *output; fails unless it exits 0.
Status run_command(int net_ns, const std::vector<std::string>& argv, std::string* output = nullptr) {
  int out[2];
  if (::pipe2(out, O_CLOEXEC) < 0) return errno_error("pipe2");
  pid_t pid = ::fork();
  if (pid < 0) return errno_error("fork " + argv[0]);
  if (pid == 0) {
    ::dup2(out[1], 1);
    prepare_tool(net_ns);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  ::close(out[1]);
  auto text = read_fd(out[0]);
  ::close(out[0]);
  if (output && text.ok()) *output = *text;
  int status;
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return errno_error("waitpid " + argv[0]);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
    return Error(ENOENT, argv[0] + " not found (is the " + argv[0] + " package installed?)");
  if (WIFEXITED(status) && WEXITSTATUS(status) == 126)
    return Error(EIO, argv[0] + " could not enter the tree's network namespace");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return Error(EIO, argv[0] + " failed");
  return {};
}

std::string_view nft_family(std::string_view tool) { return tool == "ip6tables" ? "ip6" : "ip"; }

// Whether the namespace has iptables' filter table of this tool.
bool has_filter_table(int net_ns, std::string_view tool) {
  return run_nft(net_ns, "list table " + std::string(nft_family(tool)) + " filter\n").ok();
}

// An empty filter table filters nothing: only the built-in chains, with no
// rule and an accept policy.
bool filter_table_is_empty(const std::string& listing) {
  size_t pos = 0;
  while (pos < listing.size()) {
    size_t nl = listing.find('\n', pos);
    std::string line = listing.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    pos = nl == std::string::npos ? listing.size() : nl + 1;
    line.erase(0, line.find_first_not_of(" \t"));
    if (line.empty() || line == "}" || line.starts_with("table ") ||
        line == "chain INPUT {" || line == "chain FORWARD {" || line == "chain OUTPUT {" ||
        (line.starts_with("type filter hook ") && line.ends_with(" policy accept;")))
      continue;
    return false;
  }
  return true;
}

// iptables: one DROP rule per direction and connection, marked with a comment.
// Inserting a rule makes the filter table when the namespace had none; the
// lock then also makes a chain named after itself, so that the unlock knows
// the table is its own to remove once it is empty again.
Status iptables_lock(int net_ns, const std::string& tag, const std::vector<Connection>& connections) {
  for (const char* tool : {"iptables", "ip6tables"}) {
    bool used = std::any_of(connections.begin(), connections.end(), [&](const Connection& c) {
      return (c.local.family() == AF_INET6) == (std::string(tool) == "ip6tables");
    });
    if (used && !has_filter_table(net_ns, tool)) CRYO_TRY(run_command(net_ns, {tool, "-w", "-N", tag}));
  }
  for (const auto& c : connections) {
    std::string tool = c.local.family() == AF_INET6 ? "ip6tables" : "iptables";
    std::string l = ip_text(c.local), p = ip_text(c.peer);
    std::string lp = std::to_string(c.local.port()), pp = std::to_string(c.peer.port());
    CRYO_TRY(run_command(net_ns, {tool, "-w", "-I", "INPUT", "-p", "tcp", "-s", p, "--sport", pp, "-d", l, "--dport", lp, "-m",
                          "comment", "--comment", tag, "-j", "DROP"}));
    CRYO_TRY(run_command(net_ns, {tool, "-w", "-I", "OUTPUT", "-p", "tcp", "-s", l, "--sport", lp, "-d", p, "--dport", pp, "-m",
                          "comment", "--comment", tag, "-j", "DROP"}));
  }
  // Inserted last, so first: what the restore sends to put FINs back passes.
  std::string mark = std::to_string(kRepairMark);
  for (const char* tool : {"iptables", "ip6tables"}) {
    bool used = std::any_of(connections.begin(), connections.end(), [&](const Connection& c) {
      return (c.local.family() == AF_INET6) == (std::string(tool) == "ip6tables");
    });
    if (!used) continue;
    for (const char* chain : {"INPUT", "OUTPUT"})
      CRYO_TRY(run_command(net_ns, {tool, "-w", "-I", chain, "-p", "tcp", "-m", "mark", "--mark", mark, "-m", "comment",
                            "--comment", tag, "-j", "ACCEPT"}));
  }
  return {};
}

Status iptables_unlock(int net_ns, const std::string& tag) {
  for (const char* tool : {"iptables", "ip6tables"}) {
    std::string rules;
    CRYO_TRY(run_command(net_ns, {tool, "-w", "-S"}, &rules));
    size_t pos = 0;
    while (pos < rules.size()) {
      size_t nl = rules.find('\n', pos);
      std::string line = rules.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
      pos = nl == std::string::npos ? rules.size() : nl + 1;
      if (!line.starts_with("-A ") || line.find("--comment " + tag + " ") == std::string::npos) continue;
      std::vector<std::string> argv = {tool, "-w", "-D"};
      size_t at = 3;
      while (at < line.size()) {
        size_t sp = line.find(' ', at);
        argv.push_back(line.substr(at, sp == std::string::npos ? std::string::npos : sp - at));
        at = sp == std::string::npos ? line.size() : sp + 1;
      }
      CRYO_TRY(run_command(net_ns, argv));
    }
    if (rules.find("-N " + tag + "\n") == std::string::npos) continue;
    CRYO_TRY(run_command(net_ns, {tool, "-w", "-X", tag}));
    std::string table = std::string(nft_family(tool)) + " filter";
    std::string listing;
    if (run_nft(net_ns, "list table " + table + "\n", &listing).ok() && filter_table_is_empty(listing))
      CRYO_TRY(run_nft(net_ns, "delete table " + table + "\n"));
  }
  return {};
}

}  // namespace

void lock_tools_hold(int fd) { g_tools_hold = fd; }

std::string lock_script(const std::string& table, const std::vector<Connection>& connections) {
  std::string in_rules, out_rules;
  for (const auto& c : connections) {
    std::string proto = c.local.family() == AF_INET6 ? "ip6" : "ip";
    std::string l = ip_text(c.local), p = ip_text(c.peer);
    std::string lp = std::to_string(c.local.port()), pp = std::to_string(c.peer.port());
    in_rules += "    " + proto + " saddr " + p + " " + proto + " daddr " + l + " tcp sport " + pp + " tcp dport " +
                lp + " drop\n";
    out_rules += "    " + proto + " saddr " + l + " " + proto + " daddr " + p + " tcp sport " + lp + " tcp dport " +
                 pp + " drop\n";
  }
  // What the restore sends to put FINs back passes (see kRepairMark).
  std::string pass = "    meta mark " + std::to_string(kRepairMark) + " accept\n";
  return "table inet " + table + " {\n  chain input {\n    type filter hook input priority -300; policy accept;\n" +
         pass + in_rules + "  }\n  chain output {\n    type filter hook output priority -300; policy accept;\n" + pass +
         out_rules + "  }\n}\n";
}

std::string new_lock_table() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return std::string(kLockPrefix) + std::to_string(::getpid()) + "-" + std::to_string(ts.tv_nsec);
}

Result<std::vector<LockInfo>> list_locks() {
  std::vector<std::string> found;
  auto add = [&](const std::string& text, const std::string& before) {
    for (size_t at = text.find(before + std::string(kLockPrefix)); at != std::string::npos;
         at = text.find(before + std::string(kLockPrefix), at + 1)) {
      size_t start = at + before.size();
      size_t end = text.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-", start);
      std::string name = text.substr(start, end == std::string::npos ? std::string::npos : end - start);
      if (std::find(found.begin(), found.end(), name) == found.end()) found.push_back(name);
    }
  };
  std::string tables;
  if (run_nft(-1, "list tables\n", &tables).ok()) add(tables, "table inet ");
  for (const char* tool : {"iptables", "ip6tables"}) {
    std::string rules;
    if (run_command(-1, {tool, "-w", "-S"}, &rules).ok()) {
      add(rules, "--comment ");
      add(rules, "-N ");  // the chain a lock that made the filter table leaves
    }
  }
  std::vector<LockInfo> out;
  for (const auto& name : found) {
    LockInfo info{name, static_cast<pid_t>(std::atol(name.c_str() + kLockPrefix.size())), false};
    // Running, and a cryo: the table name holds the pid of the cryo that made it.
    auto comm = read_file("/proc/" + std::to_string(info.maker) + "/comm");
    info.maker_running = info.maker > 0 && comm.ok() && comm->starts_with("cryo");
    out.push_back(std::move(info));
  }
  return out;
}

Result<std::string> lock_connections(const std::vector<Connection>& connections, const std::string& method,
                                     const std::string& table, int net_ns) {
  if (connections.empty() || method == "skip") return std::string();
  if (method == "iptables") {
    Status st = iptables_lock(net_ns, table, connections);
    if (!st.ok()) {
      (void)iptables_unlock(net_ns, table);
      return std::move(st).error().wrap("locking the network");
    }
    log::info("network locked with iptables rules marked " + table);
    return table;
  }
  if (method != "nftables")
    return Error(EINVAL, "network lock method '" + method + "' is not supported (nftables, iptables or skip)");
  CRYO_TRY(run_nft(net_ns, lock_script(table, connections)).wrap("locking the network"));
  log::info("network locked with nftables table " + table);
  return table;
}

Status unlock_connections(const std::string& table, const std::string& method, int net_ns) {
  if (table.empty() || (method != "nftables" && method != "iptables")) return {};
  // Only a lock cryo made: an image must not name the host's own tables.
  if (!table.starts_with(kLockPrefix) || table.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") != std::string::npos)
    return Error(EINVAL, "bad network lock table name '" + table + "'");
  if (method == "iptables") {
    CRYO_TRY(iptables_unlock(net_ns, table).wrap("unlocking the network"));
    log::info("network unlocked (iptables rules marked " + table + ")");
    return {};
  }
  std::string tables;
  CRYO_TRY(run_nft(net_ns, "list tables\n", &tables).wrap("unlocking the network"));
  if (tables.find("table inet " + table + "\n") == std::string::npos) return {};  // already gone
  CRYO_TRY(run_nft(net_ns, "delete table inet " + table + "\n").wrap("unlocking the network"));
  log::info("network unlocked (table " + table + ")");
  return {};
}

}  // namespace cryo::net
