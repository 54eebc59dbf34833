#include "runtime/criu_options.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <set>
#include <sstream>

namespace cryo::cli::criu {
namespace {

constexpr unsigned D = kDump, P = kPreDump, R = kRestore, C = kCheck, kAll = D | P | R | C;
constexpr Verdict kImpl = Verdict::kImplemented, kAcc = Verdict::kAccepted, kRef = Verdict::kRefused;
constexpr Value kNo = Value::kNone, kReq = Value::kRequired, kOpt = Value::kOptional;
// Row flags.
constexpr unsigned kNeg = 1, kMany = 2;

Option row(const char* name, char letter, Value value, unsigned flags, unsigned verbs, Verdict verdict,
           const char* note) {
  return Option{name, letter, value, (flags & kNeg) != 0, (flags & kMany) != 0, verbs, verdict, note};
}

const char* const kNoMountNs =
    "acts only on a mount namespace of the tree's own, which a cryo image never holds (a tree in "
    "another mount namespace is refused by the dump), so there is nothing for it to do, as in CRIU for "
    "a tree in its own mount namespace";
const char* const kNoNetNs =
    "acts only on a network namespace of the tree's own, which a cryo image never holds, so there is "
    "nothing for it to do";
const char* const kPageServerOnly = "used only by CRIU's page server and lazy pages (both refused)";

std::vector<Option> make_table() {
  return {
      // Common to every command.
      row("help", 'h', kNo, 0, kAll, kImpl, "prints the verb's usage and exits 0"),
      row("version", 'V', kNo, 0, kAll, kImpl, "prints cryo's version and the image format version it writes and reads"),
      row("verbosity", 'v', kOpt, kMany, kAll, kImpl,
          "-v, -vv..., -vN, --verbosity[=N]: the log level, 2 (warnings) by default; 0 nothing, 1 errors, "
          "3 information, 4 debug; `-v N` works too"),
      row("log-file", 'o', kReq, 0, kAll, kImpl,
          "the log file; a relative path goes into the work directory; `-` is stderr. Errors always reach "
          "stderr too"),
      row("images-dir", 'D', kReq, 0, D | P | R, kImpl, "the image directory (the current one by default)"),
      row("work-dir", 'W', kReq, 0, D | P | R, kImpl,
          "where a relative --log-file or --pidfile goes (the image directory by default)"),
      row("pidfile", 0, kReq, 0, R, kImpl, "the restored root's pid is written there"),
      row("config", 0, kReq, kMany, kAll, kImpl,
          "options are read from the file first (one a line, long names without dashes, a value after "
          "blanks or in double quotes, # comments); the command line's come after and win"),
      row("no-default-config", 0, kNo, 0, kAll, kAcc,
          "cryo reads no configuration file unless --config names one"),
      row("display-stats", 0, kNo, kNeg, D | R, kImpl,
          "prints the freeze time, the total time, the tasks and the bytes of memory at the end "
          "(stats-dump.json is written anyway)"),
      row("close", 0, kReq, kMany, kAll, kImpl, "closes that descriptor of cryo's before anything else"),
      row("libdir", 'L', kReq, 0, kAll, kAcc, "cryo has no plugins to load"),
      row("action-script", 0, kReq, kMany, D | P | R, kRef, "cryo runs no scripts at the stages of a dump or a restore"),
      row("log-pid", 0, kNo, kNeg, D | P | R, kAcc, "cryo is one process: its log is one file"),
      row("deprecated", 0, kNo, kNeg, kAll, kAcc, "nothing cryo does is deprecated"),
      row("stream", 0, kNo, kNeg, D | P | R, kRef, "images go to and come from the image directory only (no image streamer)"),
      row("status-fd", 0, kReq, 0, 0, kAcc, kPageServerOnly),
      row("ms", 0, kNo, 0, kAll, kRef, "CRIU itself refuses it (it is gone)"),

      // The tree and how the dump leaves it.
      row("tree", 't', kReq, 0, D | P, kImpl, "the pid of the tree's root"),
      row("leave-running", 'R', kNo, 0, D, kImpl, "the tree runs on after the dump instead of being killed"),
      row("leave-stopped", 's', kNo, 0, D | R, kRef,
          "a tree cannot be left stopped: after a dump it is killed (or runs on with -R), after a restore "
          "it runs"),
      row("freeze-cgroup", 0, kReq, 0, D | P, kAcc,
          "cryo stops the tree with ptrace, following forks until every task holds still; the image is the "
          "same"),
      row("timeout", 0, kReq, 0, D | P, kImpl,
          "how many seconds finding and stopping the tree may take (10 by default)"),

      // Resources and how they are saved.
      row("shell-job", 'j', kNo, kNeg, D | R, kImpl,
          "a shell job: its session, process group and terminal may lie outside the tree; needed on both "
          "sides"),
      row("tcp-established", 0, kNo, kNeg, D | R, kImpl,
          "established TCP connections are saved and made again, packets held back by a network lock "
          "in between"),
      row("skip-in-flight", 0, kNo, kNeg, D, kRef,
          "a TCP connection still being set up cannot be skipped: it fails the dump, which names it"),
      row("tcp-close", 0, kNo, kNeg, R, kRef,
          "restored connections come back established (--tcp-established), never closed"),
      row("network-lock", 0, kReq, 0, D, kImpl, "nftables (the default), iptables or skip"),
      row("network-lock", 0, kReq, 0, R, kAcc, "the image names its lock, and the restore removes that one"),
      row("ext-unix-sk", 'x', kOpt, 0, D, kImpl,
          "unix sockets whose peer is outside the tree are saved, and connect to the peer's name again "
          "on restore; a list of inodes (--ext-unix-sk=INO) is refused, since cryo cannot allow only "
          "some of them"),
      row("file-locks", 'l', kNo, kNeg, D | R, kAcc,
          "flock() and POSIX locks are always saved and taken again (OFD locks and leases fail the dump, "
          "naming the pid)"),
      row("link-remap", 0, kNo, kNeg, D | R, kRef,
          "an open file whose name was removed while another link remains cannot be linked back (a "
          "deleted file with no link left is saved in the image without it)"),
      row("ghost-limit", 0, kReq, 0, D, kImpl,
          "the largest deleted file whose data the image takes: bytes, or with K, M or G (256M by "
          "default; CRIU's is 1M)"),
      row("ghost-fiemap", 0, kNo, kNeg, D, kAcc, "only the data of a deleted file is stored, never its holes"),
      row("evasive-devices", 0, kNo, kNeg, D | R, kRef,
          "a device file is reopened at the path it had, and no other path to it is looked for"),
      row("force-irmap", 0, kNo, kNeg, D | P, kRef,
          "an inotify watch is found again by its file handle, never resolved to a path"),
      row("irmap-scan-path", 0, kReq, kMany, D | P, kRef,
          "cryo does not resolve inotify watches to paths (see --force-irmap)"),
      row("allow-uprobes", 0, kNo, kNeg, D, kRef, "a tree with a [uprobes] mapping cannot be dumped"),
      row("file-validation", 0, kReq, 0, D | R, kAcc,
          "filesize or buildid: cryo always checks a mapped file's size and a checksum of its whole "
          "contents, which covers both"),
      row("skip-file-rwx-check", 0, kNo, kNeg, R, kAcc,
          "cryo makes no separate check of a restored file's permission bits"),
      row("cpu-cap", 0, kOpt, 0, D | R, kRef,
          "cryo checks no CPU capabilities, so only --cpu-cap=none (no check) is accepted"),
      row("lazy-pages", 0, kNo, 0, D | R, kRef, "memory is restored whole before the tree runs"),
      row("unprivileged", 0, kNo, kNeg, kAll, kAcc,
          "cryo asks for the same capabilities with or without it (`cryo check` lists them)"),

      // Memory: incremental dumps and page servers.
      row("track-mem", 0, kNo, kNeg, D | P, kAcc, "every dump saves all memory, so there is nothing to track between dumps"),
      row("prev-images-dir", 0, kReq, 0, D, kAcc, "the image is complete on its own: the parent directory is not read"),
      row("auto-dedup", 0, kNo, kNeg, D, kAcc, "every dump is complete: there is no parent image to deduplicate"),
      row("auto-dedup", 0, kNo, kNeg, R, kRef, "cryo never changes an image while restoring it"),
      row("pre-dump-mode", 0, kReq, 0, P, kAcc, "splice or read (pre-dump itself is refused)"),
      row("page-server", 0, kNo, kNeg, D | P, kRef, "pages go to the image directory only"),
      row("address", 0, kReq, 0, 0, kAcc, kPageServerOnly),
      row("port", 0, kReq, 0, 0, kAcc, kPageServerOnly),
      row("ps-socket", 0, kReq, 0, 0, kAcc, kPageServerOnly),
      row("tls", 0, kNo, kNeg, 0, kAcc, kPageServerOnly),
      row("tls-cacert", 0, kReq, 0, 0, kAcc, kPageServerOnly),
      row("tls-cacrl", 0, kReq, 0, 0, kAcc, kPageServerOnly),
      row("tls-cert", 0, kReq, 0, 0, kAcc, kPageServerOnly),
      row("tls-key", 0, kReq, 0, 0, kAcc, kPageServerOnly),
      row("tls-no-cn-verify", 0, kNo, 0, 0, kAcc, kPageServerOnly),

      // cgroups.
      row("manage-cgroups", 0, kOpt, 0, D | P, kAcc,
          "every process's cgroup membership is always saved (limits never are); a mode is checked"),
      row("manage-cgroups", 0, kOpt, 0, R, kImpl,
          "soft (the default) and full: each process joins its cgroups, missing ones are made; none and "
          "props: it joins them and they must exist; ignore: it stays in cryo's. strict keeps cryo's "
          "meaning: a missing cgroup fails the restore (CRIU's strict wants them all missing)"),
      row("cgroup-root", 0, kReq, kMany, D | R, kRef, "the tree's cgroups cannot be moved under another root"),
      row("cgroup-props", 0, kReq, 0, D, kRef, "cryo saves cgroup membership, not cgroup properties"),
      row("cgroup-props-file", 0, kReq, 0, D, kRef, "cryo saves cgroup membership, not cgroup properties"),
      row("cgroup-dump-controller", 0, kReq, kMany, D, kRef,
          "cryo saves the membership in every controller and cannot choose some"),
      row("cgroup-yard", 0, kReq, 0, D | R, kAcc,
          "cryo mounts no cgroup yard: it uses the hierarchies mounted under /sys/fs/cgroup"),

      // Namespaces, mounts and the restore's surroundings.
      row("root", 'r', kReq, 0, R, kRef,
          "restoring into another root needs the tree's mount namespace, which cryo does not save; "
          "`--root /` (the root cryo runs in) is accepted"),
      row("external", 0, kReq, kMany, D | R, kRef,
          "file, tty, unix, net and pid resources cannot be named; mnt, dev, veth and macvlan ones are "
          "accepted: they act only on a mount or network namespace of the tree's own, which a cryo image "
          "never holds"),
      row("inherit-fd", 0, kReq, kMany, R, kRef,
          "descriptors cannot be handed over to the restored tree (--shell-job re-attaches a shell job's "
          "terminal and stdio)"),
      row("join-ns", 'J', kReq, kMany, R, kRef, "the tree is restored into cryo's own namespaces, no others"),
      row("ext-mount-map", 'M', kReq, kMany, D | R, kAcc, kNoMountNs),
      row("skip-mnt", 0, kReq, kMany, D, kAcc, kNoMountNs),
      row("enable-fs", 0, kReq, kMany, D, kAcc, kNoMountNs),
      row("enable-external-sharing", 0, kNo, 0, D | R, kAcc, kNoMountNs),
      row("enable-external-masters", 0, kNo, 0, D | R, kAcc, kNoMountNs),
      row("mntns-compat-mode", 0, kNo, kNeg, R, kAcc, kNoMountNs),
      row("lsm-mount-context", 0, kReq, 0, R, kAcc, kNoMountNs),
      row("veth-pair", 0, kReq, kMany, R, kAcc, kNoNetNs),
      row("empty-ns", 0, kReq, 0, D | R, kAcc, "net (the only value CRIU takes): a cryo image never holds a network namespace"),
      row("weak-sysctls", 0, kNo, kNeg, R, kAcc, "cryo restores no sysctls (they belong to namespaces a cryo image never holds)"),
      row("lsm-profile", 0, kReq, 0, R, kRef, "no AppArmor or SELinux profile is set on restore"),

      // How the restore ends.
      row("restore-detached", 'd', kNo, kNeg, R, kImpl,
          "cryo returns once the tree runs, instead of waiting for the root and exiting with its status"),
      row("daemon", 0, kNo, kNeg, R, kImpl, "the same as --restore-detached"),
      row("restore-sibling", 'S', kNo, kNeg, R, kRef,
          "the restored root is cryo's child (after -d it goes to the nearest subreaper), never its "
          "sibling"),
      row("exec-cmd", 0, kNo, 0, R, kRef, "no command is run once the tree is restored"),

      // check.
      row("feature", 0, kReq, 0, C, kImpl,
          "answers one of CRIU's feature names from cryo's own probes: exit 0 when present, 1 when absent "
          "or not probed by cryo; `list` names those cryo answers"),
      row("all", 0, kNo, 0, C, kAcc, "cryo check always lists every probe"),
      row("extra", 0, kNo, kNeg, C, kAcc, "cryo check always lists the optional features too"),
      row("experimental", 0, kNo, kNeg, C, kAcc, "cryo check always lists the optional features too"),
  };
}

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
  if (in(o.name, {"tree", "timeout", "port"}) && (!all_digits(v) || std::stoll(v.substr(0, 9)) <= 0))
    return bad("a positive number");
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
  if (o.name == "root") return v == "/";
  if (o.name == "cpu-cap") return v == "none";
  if (o.name == "external") return in(v.substr(0, v.find('[')), {"mnt", "dev", "veth", "macvlan"});
  return false;
}

// Why this value makes cryo refuse an option it otherwise takes; "" if it does not.
std::string value_refusal(const Option& o, const std::string& v) {
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

const std::vector<Option>& table() {
  static const std::vector<Option> kTable = make_table();
  return kTable;
}

const Option* lookup(const std::string& name, Verb verb) {
  for (const auto& o : table())
    if (o.name == name && (o.verbs & verb)) return &o;
  return nullptr;
}

std::vector<OptionSpec> specs() {
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
  // Configuration files come first, so that the command line wins.
  if (first->has("config")) {
    std::vector<std::string> merged;
    for (const auto& path : first->all("config")) {
      if (!read_config(path, &merged, &why)) {
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
      out << "usage: cryo pre-dump -t PID [-D DIR] [options]\n\n"
             "Refused: cryo has no incremental dumps. A dump saves all memory; dump -R takes a\n"
             "checkpoint and leaves the tree running.\n";
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
      if (!(o.verbs & verb) || o.verdict != verdict) continue;
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
    if (listed.count(o.name) || lookup(o.name, verb)) continue;
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
      {"mem_dirty_track", ""},
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
      {"pagemap_scan", ""},
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
