#include "runtime/criu_options.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <set>
#include <sstream>

#include "runtime/config_yaml.h"

namespace cryo::cli::criu {
namespace {

std::string dashed(const Option& o) {
  std::string s = "--" + o.name;
  if (o.letter) s = std::string("-") + o.letter + "/" + s;
  return s;
}

bool all_digits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); });
}

bool in(const std::string& value, std::initializer_list<const char*> allowed) {
  for (const char* a : allowed)
    if (value == a) return true;
  return false;
}

// A value CRIU itself would reject, or one that makes cryo refuse an
// option it otherwise takes (or take one it otherwise refuses).
std::string check_value(const Option& o, const std::string& v) {
  const std::string name = "--" + o.name;
  auto bad = [&](const std::string& expected) { return "bad value '" + v + "' for " + name + " (" + expected + ")"; };
  if (in(o.name, {"tree", "timeout"}) && (!all_digits(v) || std::stoll(v.substr(0, 9)) <= 0))
    return bad("a positive number");
  // 0: a port of the kernel's choice (dump --lazy-pages listens on it).
  if (o.name == "port" && (!all_digits(v) || std::stoll(v.substr(0, 9)) > 65535)) return bad("a port number, 0 to 65535");
  if (in(o.name, {"close", "status-fd", "ps-socket"}) && !all_digits(v)) return bad("a descriptor number");
  if (o.name == "verbosity" && !v.empty() && !all_digits(v) && v.find_first_not_of('v') != std::string::npos)
    return bad("a level from 0 to 4");
  if (o.name == "ghost-limit" && !parse_size(v)) return bad("bytes, or a number with K, M or G");
  if (o.name == "network-lock" && !in(v, {"nftables", "iptables", "skip"})) return bad("nftables, iptables or skip");
  if (o.name == "manage-cgroups" && !in(v, {"", "soft", "full", "none", "props", "ignore", "strict"}))
    return bad("soft, full, none, props, strict or ignore");
  if (o.name == "pre-dump-mode" && !in(v, {"splice", "read"})) return bad("splice or read");
  if (o.name == "file-validation" && !in(v, {"filesize", "buildid"})) return bad("filesize or buildid");
  if (o.name == "empty-ns" && v != "net") return bad("net");
  if (o.name == "external") {
    size_t bracket = v.find('[');
    if (bracket == std::string::npos || v.find(']', bracket) == std::string::npos)
      return bad("TYPE[ID] or TYPE[ID]:VALUE");
  }
  return "";
}

// Whether this value turns the row's verdict around.
bool value_accepted_despite_refusal(const Option& o, const std::string& v) {
  if (o.name == "cpu-cap") return v == "none";
  if (o.name == "external") return in(v.substr(0, v.find('[')), {"mnt", "dev", "veth", "macvlan", "tty", "net"});
  return false;
}

// Why this value makes cryo refuse an option it otherwise takes; "" if it does not.
std::string value_refusal(const Option& o, const std::string& v) {
  if (o.name == "join-ns" && !v.starts_with("net:"))
    return "cryo joins only a network namespace (net:PID or net:PATH); the others are made new";
  if (o.name == "ext-unix-sk" && !v.empty())
    return "cryo cannot allow only some external unix sockets (--ext-unix-sk alone allows them all)";
  return "";
}

std::string refusal_message(const std::string& option, const std::string& value, const std::string& why,
                            const char* verb) {
  return std::string(verb) + ": --" + option + (value.empty() ? "" : "=" + value) + " is not supported yet: " + why;
}

const char* verb_name(Verb verb) {
  switch (verb) {
    case kDump: return "dump";
    case kPreDump: return "pre-dump";
    case kRestore: return "restore";
    case kCheck: return "check";
  }
  return "?";
}

// Splits a configuration line into its option and value: "name",
// "name value" or "name \"a value\"", with # starting a comment.
bool split_config_line(const std::string& line, std::vector<std::string>* words, std::string* error) {
  std::vector<std::string> out;
  std::string cur;
  bool quoted = false, have = false;
  for (size_t i = 0; i < line.size(); i++) {
    char c = line[i];
    if (quoted) {
      if (c == '\\' && i + 1 < line.size() && line[i + 1] == '"') cur += line[++i];
      else if (c == '"') quoted = false;
      else cur += c;
      continue;
    }
    if (c == '#') break;
    if (c == '"') {
      quoted = have = true;
    } else if (std::isspace(static_cast<unsigned char>(c))) {
      if (have) out.push_back(cur);
      cur.clear();
      have = false;
    } else {
      cur += c;
      have = true;
    }
  }
  if (quoted) {
    *error = "an unclosed quote";
    return false;
  }
  if (have) out.push_back(cur);
  if (out.empty()) return true;
  if (out.size() > 2) {
    *error = "more than one value for " + out[0];
    return false;
  }
  words->push_back("--" + out[0]);
  if (out.size() == 2) words->push_back(out[1]);
  return true;
}

bool read_config(const std::string& path, std::vector<std::string>* words, std::string* error) {
  std::ifstream in(path);
  if (!in) {
    *error = "cannot read the configuration file " + path;
    return false;
  }
  std::string line;
  for (int n = 1; std::getline(in, line); n++) {
    std::string why;
    if (!split_config_line(line, words, &why)) {
      *error = path + ":" + std::to_string(n) + ": " + why;
      return false;
    }
  }
  return true;
}

}  // namespace

std::string bad_value(const Option& o, const std::string& v) { return check_value(o, v); }

const Option* lookup(const std::string& name, Verb verb) {
  for (const auto& o : table())
    if (o.name == name && (o.verbs & verb)) return &o;
  return nullptr;
}

// Built once: a dump parses its command line twice (about 0.15 million
// instructions a build, at every start).
const std::vector<OptionSpec>& specs() {
  static const std::vector<OptionSpec> built = [] {
    std::vector<OptionSpec> out;
    std::set<std::string> seen;
    for (const auto& o : table()) {
      if (!seen.insert(o.name).second) continue;
      OptionSpec s;
      if (o.letter) s.names.push_back(std::string("-") + o.letter);
      s.names.push_back("--" + o.name);
      s.takes_value = o.value != Value::kNone;
      s.optional_value = o.value == Value::kOptional;
      s.repeatable = o.repeatable;
      s.negatable = o.negatable;
      out.push_back(std::move(s));
    }
    return out;
  }();
  return built;
}

std::optional<Args> parse_command_line(Verb verb, const std::vector<std::string>& argv, std::string* error) {
  const char* vname = verb_name(verb);
  // "-v 4": cryo has always taken the level as the next word; CRIU only
  // attached ("-v4"), which still works.
  std::vector<std::string> words;
  for (size_t i = 0; i < argv.size(); i++) {
    if (argv[i] == "-v" && i + 1 < argv.size() && all_digits(argv[i + 1])) {
      words.push_back("-v" + argv[++i]);
      continue;
    }
    words.push_back(argv[i]);
  }
  std::string why;
  auto first = parse(specs(), words, &why);
  if (!first) {
    *error = std::string(vname) + ": " + why;
    return std::nullopt;
  }
  // Configuration files come first, so that the command line wins: cryo.yaml,
  // then each --config file (YAML by its name, else CRIU's format).
  {
    std::vector<std::string> merged;
    std::string yaml = default_yaml_config();
    if (!first->has("no-default-config") && ::access(yaml.c_str(), F_OK) == 0 &&
        !read_yaml_config(yaml, verb, &merged, &why)) {
      *error = std::string(vname) + ": " + why;
      return std::nullopt;
    }
    for (const auto& path : first->all("config")) {
      bool read = is_yaml_config(path) ? read_yaml_config(path, verb, &merged, &why) : read_config(path, &merged, &why);
      if (!read) {
        *error = std::string(vname) + ": " + why;
        return std::nullopt;
      }
    }
    merged.insert(merged.end(), words.begin(), words.end());
    words = std::move(merged);
  }
  auto args = parse(specs(), words, &why);
  if (!args) {
    *error = std::string(vname) + ": " + why;
    return std::nullopt;
  }
  if (!args->positional().empty()) {
    const std::string& stray = args->positional()[0];
    *error = std::string(vname) + ": unexpected argument '" + stray + "'";
    // getopt's optional values are attached: "--manage-cgroups none" is an error in CRIU too.
    auto at = std::find(words.begin(), words.end(), stray);
    if (at != words.begin() && at != words.end() && (at[-1] == "--manage-cgroups" || at[-1] == "--cpu-cap" ||
                                                     at[-1] == "--ext-unix-sk" || at[-1] == "--verbosity"))
      *error += " (an optional value is attached: " + at[-1] + "=" + stray + ")";
    return std::nullopt;
  }
  for (const auto& o : table()) {
    if (!args->has(o.name)) continue;
    for (const auto& value : args->all(o.name)) {
      if (o.value == Value::kRequired || !value.empty())
        if (auto bad = check_value(o, value); !bad.empty()) {
          *error = std::string(vname) + ": " + bad;
          return std::nullopt;
        }
    }
    if (!(o.verbs & verb) && o.cryo_only) {  // no CRIU script passes it: a mistake
      *error = std::string(vname) + ": --" + o.name + " is not supported here (one of cryo's own options, for another verb)";
      return std::nullopt;
    }
    if (!(o.verbs & verb)) continue;  // CRIU ignores it for this verb too
    for (const auto& value : args->all(o.name)) {
      std::string because = o.verdict == Verdict::kRefused ? (value_accepted_despite_refusal(o, value) ? "" : o.note)
                                                           : value_refusal(o, value);
      if (!because.empty()) {
        *error = refusal_message(o.name, value, because, vname);
        return std::nullopt;
      }
    }
  }
  return args;
}

int verbosity(const Args& args, int level) {
  for (const auto& v : args.all("verbosity")) {
    if (v.empty()) level++;
    else if (all_digits(v)) level = std::stoi(v.substr(0, 3));
    else level += static_cast<int>(v.size()) + 1;  // "-vvv" arrives as -v with "vv"
  }
  return level;
}

std::optional<uint64_t> parse_size(const std::string& text) {
  if (text.empty() || !std::isdigit(static_cast<unsigned char>(text[0]))) return std::nullopt;
  size_t end = 0;
  uint64_t n = 0;
  try {
    n = std::stoull(text, &end);
  } catch (...) {
    return std::nullopt;
  }
  std::string unit = text.substr(end);
  int shift = unit.empty()                     ? 0
              : unit == "K" || unit == "k"     ? 10
              : unit == "M" || unit == "m"     ? 20
              : unit == "G" || unit == "g"     ? 30
                                               : -1;
  if (shift < 0 || n > (UINT64_MAX >> shift)) return std::nullopt;
  return n << shift;
}

std::string usage(Verb verb) {
  std::ostringstream out;
  switch (verb) {
    case kDump:
      out << "usage: cryo dump -t PID [-D DIR] [options]\n\n"
             "Saves the process tree rooted at PID into DIR, then kills it (-R: lets it run on).\n";
      break;
    case kPreDump:
      out << "usage: cryo pre-dump -t PID [-D DIR] [--prev-images-dir DIR] [options]\n\n"
             "Copies the memory of the tree rooted at PID into DIR and leaves it running with its\n"
             "writes tracked; `cryo dump --prev-images-dir DIR` then saves only what changed since.\n";
      break;
    case kRestore:
      out << "usage: cryo restore [-D DIR] [options]\n\n"
             "Restores the tree saved in DIR with its pids, and waits for its root (-d: returns once\n"
             "it runs).\n";
      break;
    case kCheck:
      out << "usage: cryo check [--all] [--feature NAME]\n\n"
             "Lists the kernel features cryo relies on (exit 1 if one it needs is missing), or answers\n"
             "for one of CRIU's feature names (--feature list names those cryo answers).\n";
      break;
  }
  bool own_header = false;
  for (const auto& o : table()) {
    if (!o.cryo_only || !(o.verbs & verb)) continue;
    if (!own_header) out << "\ncryo's own options:\n";
    own_header = true;
    out << "  " << dashed(o) << (o.value == Value::kRequired ? " ARG" : "") << "\n      " << o.note << "\n";
  }
  out << "\nCRIU's options, as CRIU spells them (--opt VALUE, --opt=VALUE, -oVALUE, --no-opt):\n";
  const std::pair<Verdict, const char*> groups[] = {
      {Verdict::kImplemented, "what cryo does with them"},
      {Verdict::kAccepted, "accepted, as cryo already behaves so"},
      {Verdict::kRefused, "refused (the command fails naming the option)"},
  };
  std::set<std::string> listed;
  for (const auto& [verdict, title] : groups) {
    out << "\n" << title << ":\n";
    for (const auto& o : table()) {
      if (!(o.verbs & verb) || o.verdict != verdict || o.cryo_only) continue;
      listed.insert(o.name);
      std::string head = dashed(o) + (o.value == Value::kRequired   ? " ARG"
                                      : o.value == Value::kOptional ? "[=ARG]"
                                                                    : "");
      out << "  " << head << "\n      " << o.note << "\n";
    }
  }
  out << "\naccepted, and without effect here (as in CRIU):\n ";
  size_t column = 1;
  for (const auto& o : table()) {
    if (listed.count(o.name) || lookup(o.name, verb) || o.cryo_only) continue;
    listed.insert(o.name);
    std::string word = " --" + o.name;
    if (column + word.size() > 78) {
      out << "\n ";
      column = 1;
    }
    out << word;
    column += word.size();
  }
  out << "\n";
  return out.str();
}

namespace {

// CRIU's `check --feature` names, and the probe of cryo's that answers each
// one cryo relies on (core/features.cpp names them).
const std::vector<std::pair<std::string, std::string>>& feature_names() {
  static const std::vector<std::pair<std::string, std::string>> kNames = {
      {"mnt_id", ""},
      {"mem_dirty_track", "write tracking (userfaultfd WP_ASYNC + PAGEMAP_SCAN)"},
      {"aio_remap", ""},
      {"timerfd", ""},
      {"tun", ""},
      {"userns", ""},
      {"fdinfo_lock", ""},
      {"seccomp_suspend", ""},
      {"seccomp_filters", ""},
      {"loginuid", ""},
      {"cgroupns", ""},
      {"autofs", ""},
      {"tcp_half_closed", ""},
      {"compat_cr", ""},
      {"uffd", "userfaultfd"},
      {"uffd-noncoop", ""},
      {"can_map_vdso", ""},
      {"sk_ns", ""},
      {"sk_unix_file", ""},
      {"net_diag_raw", ""},
      {"nsid", ""},
      {"link_nsid", ""},
      {"kcmp_epoll", ""},
      {"timens", ""},
      {"external_net_ns", ""},
      {"clone3_set_tid", "clone3 with set_tid"},
      {"newifindex", ""},
      {"nftables", ""},
      {"has_ipt_legacy", ""},
      {"pidfd_store", ""},
      {"ns_pid", ""},
      {"apparmor_stacking", ""},
      {"network_lock_nftables", ""},
      {"sockopt_buf_lock", ""},
      {"memfd_hugetlb", ""},
      {"move_mount_set_group", ""},
      {"openat2", ""},
      {"get_rseq_conf", "ptrace rseq configuration"},
      {"ipv6_freebind", ""},
      {"pagemap_scan", "write tracking (userfaultfd WP_ASYNC + PAGEMAP_SCAN)"},
      {"timer_cr_ids", "POSIX timers with given ids"},
  };
  return kNames;
}

}  // namespace

std::optional<std::string> probe_for_feature(const std::string& criu_name) {
  for (const auto& [criu, cryo] : feature_names())
    if (criu == criu_name && !cryo.empty()) return cryo;
  return std::nullopt;
}

bool is_criu_feature(const std::string& criu_name) {
  for (const auto& [criu, cryo] : feature_names())
    if (criu == criu_name) return true;
  return false;
}

std::vector<std::string> answered_features() {
  std::vector<std::string> out;
  for (const auto& [criu, cryo] : feature_names())
    if (!cryo.empty()) out.push_back(criu);
  return out;
}

}  // namespace cryo::cli::criu
