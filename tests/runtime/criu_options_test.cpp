#include "runtime/criu_options.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <fstream>
#include <tuple>
#include <set>

using namespace cryo::cli;
using namespace cryo::cli::criu;

namespace {

const Verb kVerbs[] = {kDump, kPreDump, kRestore, kCheck};

// A value each option takes (CRIU checks some of them).
std::string valid_value(const std::string& name) {
  static const std::map<std::string, std::string> kValues = {
      {"tree", "1"},           {"timeout", "5"},        {"port", "1234"},          {"close", "1000"},
      {"status-fd", "1000"},   {"ps-socket", "1000"},   {"verbosity", "4"},        {"ghost-limit", "1M"},
      {"network-lock", "skip"}, {"manage-cgroups", "soft"}, {"pre-dump-mode", "read"}, {"file-validation", "buildid"},
      {"empty-ns", "net"},     {"external", "mnt[]:m"}, {"root", "/"},             {"cpu-cap", "none"},
      {"ext-unix-sk", ""},     {"join-ns", "net:/run/netns/x"},
  };
  auto it = kValues.find(name);
  return it == kValues.end() ? "x" : it->second;
}

std::optional<Args> parse_for(Verb verb, std::vector<std::string> argv, std::string* err) {
  return parse_command_line(verb, argv, err);
}

}  // namespace

TEST_CASE("the table: one row per option and verb, each with a note") {
  std::set<std::pair<std::string, unsigned>> seen;
  for (const auto& o : table()) {
    CHECK_MESSAGE(!o.note.empty(), o.name);
    for (Verb v : kVerbs)
      if (o.verbs & v) CHECK_MESSAGE(seen.insert({o.name, v}).second, o.name);
  }
  for (const char* name : {"tree", "leave-running", "leave-stopped", "external", "freeze-cgroup", "manage-cgroups",
                           "tcp-established", "skip-in-flight", "evasive-devices", "page-server", "force-irmap",
                           "file-locks", "link-remap", "ghost-limit", "ghost-fiemap", "shell-job", "cpu-cap",
                           "lazy-pages", "inherit-fd", "restore-detached", "restore-sibling", "root", "pidfile",
                           "tcp-close", "lsm-profile", "weak-sysctls", "track-mem", "prev-images-dir", "address",
                           "port", "work-dir", "log-file", "verbosity", "images-dir", "network-lock", "timeout",
                           "feature", "config", "display-stats", "allow-uprobes", "unprivileged", "stream"})
    CHECK_MESSAGE(std::any_of(table().begin(), table().end(), [&](const Option& o) { return o.name == name; }), name);
}

TEST_CASE("every option parses in each of CRIU's spellings") {
  for (const auto& o : table()) {
    if (o.name == "config") continue;  // reads a file: below
    std::string v = valid_value(o.name);
    std::vector<std::vector<std::string>> spellings;
    if (o.value == Value::kNone) {
      spellings.push_back({"--" + o.name});
      if (o.letter) spellings.push_back({std::string("-") + o.letter});
      if (o.negatable) spellings.push_back({"--" + o.name, "--no-" + o.name});
    } else if (o.value == Value::kRequired) {
      spellings.push_back({"--" + o.name, v});
      spellings.push_back({"--" + o.name + "=" + v});
      if (o.letter) spellings.push_back({std::string("-") + o.letter, v});
      if (o.letter) spellings.push_back({std::string("-") + o.letter + v});
    } else {
      spellings.push_back({"--" + o.name + (v.empty() ? "" : "=" + v)});
      if (o.letter) spellings.push_back({std::string("-") + o.letter + v});
    }
    for (const auto& words : spellings) {
      std::string err;
      auto a = parse(specs(), words, &err);
      CHECK_MESSAGE(a, (o.name + ": " + err));
      if (a && words.size() == 2 && words[1] == "--no-" + o.name) CHECK_MESSAGE(!a->has(o.name), o.name);
      else if (a) CHECK_MESSAGE(a->has(o.name), o.name);
    }
  }
}

TEST_CASE("each option is answered for each verb: taken, or refused naming it") {
  for (const auto& o : table()) {
    if (o.name == "config") continue;
    std::vector<std::string> words = {"--" + o.name};
    if (o.value == Value::kRequired) words.push_back(valid_value(o.name));
    else if (o.value == Value::kOptional && !valid_value(o.name).empty()) words[0] += "=" + valid_value(o.name);
    for (Verb verb : kVerbs) {
      std::string err;
      auto a = parse_for(verb, words, &err);
      const Option* row = lookup(o.name, verb);
      bool refused = (row && row->verdict == Verdict::kRefused && o.name != "cpu-cap" &&
                      o.name != "external") ||
                     (!row && o.cryo_only);  // cryo's own option on a verb it does not act on
      if (refused) {
        CHECK_MESSAGE(!a, o.name);
        CHECK_MESSAGE(err.find("--" + o.name) != std::string::npos, err);
        CHECK_MESSAGE(err.find("not supported") != std::string::npos, err);
      } else {
        CHECK_MESSAGE(a, (o.name + ": " + err));
      }
    }
  }
}

TEST_CASE("a CRIU script's dump and restore lines are taken whole") {
  std::string err;
  auto d = parse_for(kDump,
                     {"-t", "123", "-D", "/tmp/img", "-W", "/tmp/work", "-o", "dump.log", "-v4", "--shell-job",
                      "--tcp-established", "--ext-unix-sk", "--file-locks", "--ghost-limit", "8M", "--ghost-fiemap",
                      "--manage-cgroups=soft", "--timeout=20", "--network-lock", "iptables", "--freeze-cgroup",
                      "/sys/fs/cgroup/x", "--track-mem", "--prev-images-dir=../parent", "--cpu-cap=none",
                      "--display-stats", "--no-default-config", "-L", "/usr/lib/criu", "--log-pid", "-R"},
                     &err);
  REQUIRE_MESSAGE(d, err);
  CHECK(d->get("tree") == "123");
  CHECK(d->get("work-dir") == "/tmp/work");
  CHECK(d->get("ghost-limit") == "8M");
  CHECK(d->get("network-lock") == "iptables");
  CHECK(verbosity(*d) == 4);
  auto r = parse_for(kRestore,
                     {"-D", "/tmp/img", "-d", "-j", "--tcp-established", "--pidfile", "r.pid", "--manage-cgroups",
                      "-l", "--weak-sysctls", "--skip-file-rwx-check", "--file-validation=filesize", "--root", "/",
                      "--external", "mnt[]:", "-vv", "--mntns-compat-mode", "--veth-pair", "eth0=veth1"},
                     &err);
  REQUIRE_MESSAGE(r, err);
  CHECK(r->has("restore-detached"));
  CHECK(r->get("manage-cgroups") == "");
  CHECK(verbosity(*r) == 4);
}

TEST_CASE("values that change the answer") {
  std::string err;
  CHECK(parse_for(kRestore, {"--root", "/mnt/new"}, &err));
  CHECK(parse_for(kDump, {"--cpu-cap=none"}, &err));
  CHECK_FALSE(parse_for(kDump, {"--cpu-cap"}, &err));
  CHECK(err.find("--cpu-cap") != std::string::npos);
  CHECK_FALSE(parse_for(kRestore, {"--cpu-cap=fpu"}, &err));
  CHECK(parse_for(kDump, {"--external", "mnt[/data]:data"}, &err));
  CHECK(parse_for(kRestore, {"--external", "veth[eth0]:veth1@br0"}, &err));
  CHECK_FALSE(parse_for(kDump, {"--external", "file[12:345]"}, &err));
  CHECK(err.find("--external=file[12:345]") != std::string::npos);
  CHECK(parse_for(kDump, {"-x"}, &err));
  CHECK_FALSE(parse_for(kDump, {"-x12345"}, &err));
  CHECK(err.find("--ext-unix-sk=12345") != std::string::npos);
}

TEST_CASE("options for another verb are taken, as CRIU ignores them") {
  std::string err;
  CHECK(parse_for(kDump, {"--tcp-close", "-d", "--pidfile", "p", "--inherit-fd", "fd[1]:tty[1:2]"}, &err));
  CHECK(parse_for(kCheck, {"--lazy-pages", "-t", "1"}, &err));
  CHECK(parse_for(kRestore, {"--skip-in-flight", "--page-server", "--address", "10.0.0.1", "--port", "27"}, &err));
  CHECK_FALSE(parse_for(kRestore, {"--lsm-profile", "x"}, &err));
  CHECK(err == "restore: --lsm-profile=x is not supported yet: " + lookup("lsm-profile", kRestore)->note);
  CHECK_FALSE(parse_for(kDump, {"--stream"}, &err));
  CHECK(err == "dump: --stream is not supported yet: " + lookup("stream", kDump)->note);
}

TEST_CASE("bad values and stray words are errors, as in CRIU") {
  std::string err;
  CHECK_FALSE(parse_for(kDump, {"-t", "abc"}, &err));
  CHECK(err.find("-tree") != std::string::npos);
  CHECK_FALSE(parse_for(kDump, {"-t", "0"}, &err));
  CHECK_FALSE(parse_for(kDump, {"--ghost-limit", "12Q"}, &err));
  CHECK(err.find("--ghost-limit") != std::string::npos);
  CHECK_FALSE(parse_for(kDump, {"--network-lock=ebtables"}, &err));
  CHECK_FALSE(parse_for(kRestore, {"--join-ns", "ipc:/proc/1/ns/ipc"}, &err));
  CHECK(err.find("only a network namespace") != std::string::npos);
  CHECK_FALSE(parse_for(kRestore, {"--manage-cgroups=sometimes"}, &err));
  CHECK_FALSE(parse_for(kDump, {"--timeout", "-1"}, &err));
  CHECK_FALSE(parse_for(kRestore, {"--manage-cgroups", "none"}, &err));
  CHECK(err.find("--manage-cgroups=none") != std::string::npos);
  CHECK_FALSE(parse_for(kDump, {"--bogus"}, &err));
  CHECK(err == "dump: unknown option --bogus");
}

TEST_CASE("verbosity: CRIU's forms and cryo's -v N") {
  auto level = [](std::vector<std::string> words) {
    std::string err;
    auto a = parse_command_line(kDump, words, &err);
    REQUIRE_MESSAGE(a, err);
    return verbosity(*a);
  };
  CHECK(level({}) == 2);
  CHECK(level({"-v"}) == 3);
  CHECK(level({"-vv"}) == 4);
  CHECK(level({"-v", "-v"}) == 4);
  CHECK(level({"-v0"}) == 0);
  CHECK(level({"-v", "1"}) == 1);
  CHECK(level({"--verbosity"}) == 3);
  CHECK(level({"--verbosity=4"}) == 4);
}

TEST_CASE("--config: the file's options first, the command line's win") {
  char path[] = "/tmp/cryo-criu-config-XXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  close(fd);
  {
    std::ofstream f(path);
    f << "# a CRIU configuration file\ntcp-established\nghost-limit 1M   # inline comment\n"
         "log-file \"my \\\"dump\\\" log\"\nnetwork-lock skip\n";
  }
  std::string err;
  auto a = parse_command_line(kDump, {"--config", path, "--network-lock", "iptables", "-t", "7"}, &err);
  REQUIRE_MESSAGE(a, err);
  CHECK(a->has("tcp-established"));
  CHECK(a->get("ghost-limit") == "1M");
  CHECK(a->get("log-file") == "my \"dump\" log");
  CHECK(a->get("network-lock") == "iptables");
  {
    std::ofstream f(path);
    f << "stream\n";
  }
  CHECK_FALSE(parse_command_line(kDump, {"--config=" + std::string(path)}, &err));
  CHECK(err.find("--stream") != std::string::npos);
  ::unlink(path);
  CHECK_FALSE(parse_command_line(kDump, {"--config", path}, &err));
  CHECK(err.find(path) != std::string::npos);
}

TEST_CASE("cryo.yaml: defaults for every verb and per verb, checked with the line") {
  char dir[] = "/tmp/cryo-yaml-XXXXXX";
  REQUIRE(mkdtemp(dir));
  std::string path = std::string(dir) + "/cryo.yaml";
  auto write = [&](const std::string& text) { std::ofstream(path) << text; };
  ::setenv("CRYO_CONFIG", path.c_str(), 1);
  write("# defaults\ntcp-established: true\nmanage-cgroups: full\nghost-limit: 1M\n"
        "external: [\"mnt[/a]:a\", \"mnt[/b]:b\"]\nfile-locks: false\n"
        "dump:\n  leave-running: true\n  network-lock: iptables\nrestore:\n  restore-detached: true\n");
  std::string err;
  auto a = parse_command_line(kDump, {"-t", "7", "--ghost-limit", "2M"}, &err);
  REQUIRE_MESSAGE(a, err);
  CHECK(a->has("tcp-established"));
  CHECK(a->has("leave-running"));
  CHECK(a->get("manage-cgroups") == "full");
  CHECK(a->get("network-lock") == "iptables");
  CHECK(a->get("ghost-limit") == "2M");  // the command line wins
  CHECK(a->all("external").size() == 2);
  CHECK_FALSE(a->has("file-locks"));
  CHECK_FALSE(a->has("restore-detached"));  // the restore's section only
  // --no-default-config skips it.
  a = parse_command_line(kDump, {"-t", "7", "--no-default-config"}, &err);
  REQUIRE_MESSAGE(a, err);
  CHECK_FALSE(a->has("tcp-established"));
  // Mistakes name the file, the line and the key.
  for (auto [text, line, what] : std::vector<std::tuple<std::string, int, std::string>>{
           {"tcp-established: true\nbogus-option: 1\n", 2, "unknown option 'bogus-option'"},
           {"\n\ntcp-established: sometimes\n", 3, "tcp-established is a flag"},
           {"network-lock: pigeons\n", 1, "bad value 'pigeons' for --network-lock"},
           {"dump:\n  leave-running: true\n  nonsense: 2\n", 3, "unknown option 'nonsense'"},
           {"ghost-limit: [1M, 2M]\n", 1, "ghost-limit takes one value"},
           {"tcp-established: [\n", 2, ""}}) {
    write(text);
    CHECK_FALSE(parse_command_line(kDump, {"-t", "7"}, &err));
    CHECK_MESSAGE(err.find(path + ":" + std::to_string(line) + ": " + what) != std::string::npos, err);
  }
  // A --config FILE.yaml is read the same way, after cryo.yaml.
  write("tcp-established: true\n");
  std::string other = std::string(dir) + "/more.yml";
  std::ofstream(other) << "restore:\n  restore-detached: true\n";
  a = parse_command_line(kRestore, {"--config", other}, &err);
  REQUIRE_MESSAGE(a, err);
  CHECK(a->has("tcp-established"));
  CHECK(a->has("restore-detached"));
  ::unsetenv("CRYO_CONFIG");
  ::unlink(path.c_str());
  ::unlink(other.c_str());
  ::rmdir(dir);
}

TEST_CASE("usage lists every option with its answer") {
  std::string dump = usage(kDump);
  for (const auto& o : table())  // cryo's own options only where they act
    if (!o.cryo_only || (o.verbs & kDump)) CHECK_MESSAGE(dump.find("--" + o.name) != std::string::npos, o.name);
  CHECK(usage(kRestore).find("cryo's own options:\n  --new-pidns\n") != std::string::npos);
  std::string err;
  CHECK_FALSE(parse_command_line(kDump, {"--new-pidns"}, &err));
  CHECK(err.find("--new-pidns") != std::string::npos);
  CHECK(usage(kRestore).find("--tcp-close ") == std::string::npos);  // listed as refused, with its note
  CHECK(usage(kRestore).find("--tcp-close\n") != std::string::npos);
}

TEST_CASE("check --feature names map onto cryo's probes") {
  CHECK(probe_for_feature("uffd") == "userfaultfd");
  CHECK(probe_for_feature("clone3_set_tid") == "clone3 with set_tid");
  CHECK(probe_for_feature("get_rseq_conf") == "ptrace rseq configuration");
  CHECK_FALSE(probe_for_feature("mnt_id"));
  CHECK(is_criu_feature("mnt_id"));
  CHECK(is_criu_feature("uffd-noncoop"));
  CHECK_FALSE(is_criu_feature("bogus"));
  for (const auto& name : answered_features()) CHECK(probe_for_feature(name));
}

TEST_CASE("sizes") {
  CHECK(parse_size("1048576") == 1048576u);
  CHECK(parse_size("512K") == (512u << 10));
  CHECK(parse_size("64M") == (64u << 20));
  CHECK(parse_size("1G") == (1ull << 30));
  CHECK_FALSE(parse_size("-1"));
  CHECK_FALSE(parse_size("12Q"));
  CHECK_FALSE(parse_size(""));
}

// README.md's "CRIU's options" table is written from the table: every row with
// its verdict and note, and the counts above it.
TEST_CASE("README.md's option table and counts are the table's") {
  std::ifstream in(CRYO_README);
  REQUIRE(in);
  std::string line, text;
  std::vector<std::string> rows;
  while (std::getline(in, line)) {
    text += line + "\n";
    if (line.starts_with("| `")) rows.push_back(line);
  }
  CHECK(rows.size() == table().size());
  std::map<Verdict, size_t> counts;
  std::set<std::string> names;
  size_t criu_rows = 0;
  for (const auto& o : table()) {
    const char* word = o.verdict == Verdict::kImplemented ? "implemented"
                       : o.verdict == Verdict::kAccepted  ? "accepted"
                                                          : "refused";
    // cryo's own options have a table of their own, without a verdict.
    std::string tail = o.cryo_only ? "| " + o.note + " |" : std::string("| ") + word + " | " + o.note + " |";
    if (!o.cryo_only) {
      counts[o.verdict]++;
      names.insert(o.name);
      criu_rows++;
    }
    CHECK_MESSAGE(std::any_of(rows.begin(), rows.end(),
                              [&](const std::string& r) {
                                return r.find("`--" + o.name + "`") != std::string::npos && r.ends_with(tail);
                              }),
                  (std::string("README.md lacks the row: --") + o.name + " " + tail));
  }
  std::string sentence = "Of " + std::to_string(names.size()) + " options (" + std::to_string(criu_rows) + " rows";
  CHECK_MESSAGE(text.find(sentence) != std::string::npos, sentence);
  sentence = std::to_string(counts[Verdict::kImplemented]) + " rows are implemented, " +
             std::to_string(counts[Verdict::kAccepted]) + " accepted and " + std::to_string(counts[Verdict::kRefused]) +
             " refused.";
  CHECK_MESSAGE(text.find(sentence) != std::string::npos, sentence);
}
