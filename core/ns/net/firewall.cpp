// The namespace's firewall: its nftables ruleset, its iptables, arptables
// and ebtables rules, and the rules of the legacy (x_tables) iptables.
//
// Debian's iptables is the nf_tables one: its tables are nftables tables too,
// which `nft list ruleset` shows but whose xtables matches nft cannot make
// again (arptables' mangle target, for one). So the image keeps each rule
// once: iptables-save for the tables iptables has (ip, ip6), arptables-save
// and ebtables-save for those of arptables (arp) and ebtables (bridge),
// `nft list ruleset` for the others, and the restore loads the nft ruleset
// first, then each tool's rules with its own restore. The legacy iptables
// keeps tables of its own, which nft does not see: iptables-legacy-save
// reads them, when the namespace has any.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <map>
#include <set>
#include <sstream>

#include "core/ns/net/net_config.h"
#include "core/sys/io.h"

namespace cryo::ns::net {
namespace {

// Runs a tool of cryo's (in the calling thread's network namespace), input
// on its stdin; its stdout is the result. Fails naming what it said.
Result<std::string> run_tool(const std::vector<std::string>& argv, const std::string& input) {
  int in[2], out[2], err[2];
  if (::pipe2(in, O_CLOEXEC) < 0 || ::pipe2(out, O_CLOEXEC) < 0 || ::pipe2(err, O_CLOEXEC) < 0)
    return errno_error("pipe2");
  UniqueFd in_r(in[0]), in_w(in[1]), out_r(out[0]), out_w(out[1]), err_r(err[0]), err_w(err[1]);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) return errno_error("fork " + argv[0]);
  if (pid == 0) {
    ::dup2(in[0], 0);
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  in_r.reset();
  out_w.reset();
  err_w.reset();
  Status wrote = write_all(in_w.get(), input);  // small: the pipe holds it or the tool reads it first
  in_w.reset();
  auto text = read_fd(out_r.get());
  auto said = read_fd(err_r.get());
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return errno_error("waitpid " + argv[0]);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 127) return Error(ENOENT, argv[0] + " not found");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::string why = said.ok() ? *said : "";
    while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
    return Error(EIO, argv[0] + " failed" + (why.empty() ? "" : ": " + why));
  }
  if (!wrote.ok()) return std::move(wrote).error().wrap(argv[0]);
  if (!text.ok()) return std::move(text).error().wrap(argv[0]);
  return std::move(*text);
}

// The tables iptables-save printed ("*filter" lines), as nft names them.
std::set<std::string> iptables_tables(const std::string& saved, const std::string& family) {
  std::set<std::string> out;
  std::istringstream lines(saved);
  for (std::string line; std::getline(lines, line);)
    if (line.starts_with("*")) out.insert("table " + family + " " + line.substr(1) + " {");
  return out;
}

using Chains = std::map<std::string, std::set<std::string>>;  // by "table FAMILY NAME {"

// The ruleset without the tables named (nft prints a table from a
// "table FAMILY NAME {" line to a "}" line, both at the start of a line);
// the chains those had go to *chains.
std::string without_tables(const std::string& ruleset, const std::set<std::string>& drop, Chains* chains) {
  std::string out, table;
  std::istringstream lines(ruleset);
  for (std::string line; std::getline(lines, line);) {
    if (table.empty() && drop.count(line)) {
      table = line;
      continue;
    }
    if (!table.empty()) {
      if (line == "}") table.clear();
      if (line.starts_with("\tchain ") && line.ends_with(" {")) (*chains)[table].insert(line.substr(7, line.size() - 9));
      continue;
    }
    out += line + "\n";
  }
  return out;
}

// iptables-save names every built-in chain of a table, and iptables-restore
// would make each; iptables-nft makes one only when a rule needs it. The
// chains the table did not have are left out, so that it comes back as it was.
std::string only_chains_made(const std::string& saved, const std::string& family, const Chains& chains) {
  std::string out;
  const std::set<std::string>* have = nullptr;
  std::istringstream lines(saved);
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with("*")) {
      auto it = chains.find("table " + family + " " + line.substr(1) + " {");
      have = it == chains.end() ? nullptr : &it->second;
    }
    if (line.starts_with(":") && have && !have->count(line.substr(1, line.find(' ') - 1))) continue;
    out += line + "\n";
  }
  return out;
}

// The rules of the legacy iptables' tables named in names_file (a file of
// /proc/net), by its -save tool; empty when it has none (the tool would
// print nothing either, but need not run).
Result<std::string> legacy_rules(const char* names_file, const std::string& tool) {
  auto tables = read_file(names_file);
  if (!tables.ok() || tables->find_first_not_of(" \n") == std::string::npos) return std::string();
  return run_tool({tool}, "").wrap("reading the rules of the legacy iptables (" + tool + ")");
}

}  // namespace

Status dump_firewall(image::NetFirewall* out) {
  CRYO_ASSIGN(std::string legacy4, legacy_rules("/proc/thread-self/net/ip_tables_names", "iptables-legacy-save"));
  CRYO_ASSIGN(std::string legacy6, legacy_rules("/proc/thread-self/net/ip6_tables_names", "ip6tables-legacy-save"));
  out->set_iptables_legacy(legacy4);
  out->set_ip6tables_legacy(legacy6);
  CRYO_ASSIGN(std::string ruleset, run_tool({"nft", "list", "ruleset"}, "").wrap("reading the nftables ruleset"));
  if (ruleset.find_first_not_of(" \n") == std::string::npos) return {};  // no table: nothing of iptables-nft either
  CRYO_ASSIGN(std::string v4, run_tool({"iptables-save"}, "").wrap("reading the iptables rules"));
  CRYO_ASSIGN(std::string v6, run_tool({"ip6tables-save"}, "").wrap("reading the ip6tables rules"));
  std::set<std::string> drop = iptables_tables(v4, "ip");
  drop.merge(iptables_tables(v6, "ip6"));
  // arptables and ebtables only when the ruleset has tables of their
  // families (their -save would otherwise make them, empty).
  std::string arp, bridge;
  if (ruleset.find("\ntable arp ") != std::string::npos || ruleset.starts_with("table arp ")) {
    CRYO_ASSIGN(arp, run_tool({"arptables-save"}, "").wrap("reading the arptables rules"));
    drop.merge(iptables_tables(arp, "arp"));
  }
  if (ruleset.find("\ntable bridge ") != std::string::npos || ruleset.starts_with("table bridge ")) {
    CRYO_ASSIGN(bridge, run_tool({"ebtables-save"}, "").wrap("reading the ebtables rules"));
    drop.merge(iptables_tables(bridge, "bridge"));
  }
  // A network lock of cryo's is no part of the tree's firewall.
  std::istringstream lines(ruleset);
  for (std::string line; std::getline(lines, line);)
    if (line.starts_with("table ") && line.find(" cryo-lock-") != std::string::npos) drop.insert(line);
  Chains chains;
  out->set_nft(without_tables(ruleset, drop, &chains));
  if (!drop.empty()) {
    out->set_iptables(only_chains_made(v4, "ip", chains));
    out->set_ip6tables(only_chains_made(v6, "ip6", chains));
    if (!arp.empty()) out->set_arptables(only_chains_made(arp, "arp", chains));
    if (!bridge.empty()) out->set_ebtables(only_chains_made(bridge, "bridge", chains));
  }
  return {};
}

Status load_firewall(const image::NetFirewall& fw) {
  if (fw.nft().find_first_not_of(" \n") != std::string::npos)
    CRYO_TRY(run_tool({"nft", "-f", "-"}, fw.nft()).wrap("loading the nftables ruleset"));
  // --noflush: the network lock of the tree's connections may be there already.
  if (!fw.iptables().empty())
    CRYO_TRY(run_tool({"iptables-restore", "-w", "--noflush"}, fw.iptables()).wrap("loading the iptables rules"));
  if (!fw.ip6tables().empty())
    CRYO_TRY(run_tool({"ip6tables-restore", "-w", "--noflush"}, fw.ip6tables()).wrap("loading the ip6tables rules"));
  if (!fw.arptables().empty())
    CRYO_TRY(run_tool({"arptables-restore", "--noflush"}, fw.arptables()).wrap("loading the arptables rules"));
  if (!fw.ebtables().empty())
    CRYO_TRY(run_tool({"ebtables-restore", "--noflush"}, fw.ebtables()).wrap("loading the ebtables rules"));
  if (!fw.iptables_legacy().empty())
    CRYO_TRY(run_tool({"iptables-legacy-restore", "-w", "--noflush"}, fw.iptables_legacy())
                 .wrap("loading the legacy iptables rules"));
  if (!fw.ip6tables_legacy().empty())
    CRYO_TRY(run_tool({"ip6tables-legacy-restore", "-w", "--noflush"}, fw.ip6tables_legacy())
                 .wrap("loading the legacy ip6tables rules"));
  return {};
}

}  // namespace cryo::ns::net
