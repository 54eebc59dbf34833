// CRIU's command line for the process-mode verbs (dump, pre-dump, restore,
// check): one table of every option CRIU 4.2 takes and what cryo does with
// it. An option cryo cannot honour is refused by name, never dropped.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "runtime/args.h"

namespace cryo::cli::criu {

enum Verb : unsigned { kDump = 1, kPreDump = 2, kRestore = 4, kCheck = 8 };

enum class Verdict {
  kImplemented,  // it changes what cryo does, as it does in CRIU
  kAccepted,     // cryo already behaves that way (or it has nothing to act on)
  kRefused,      // cryo cannot do what it asks: the command fails naming it
};

enum class Value { kNone, kRequired, kOptional };

struct Option {
  std::string name;  // the long name, without dashes
  char letter = 0;   // the one-letter spelling, if any
  Value value = Value::kNone;
  bool negatable = false;  // CRIU's boolean options also take --no-NAME
  bool repeatable = false;
  unsigned verbs = 0;      // the verbs it acts on in CRIU (elsewhere CRIU ignores it)
  Verdict verdict = Verdict::kAccepted;
  std::string note;  // what cryo does with it, or why it is refused
  bool cryo_only = false;  // cryo's own: CRIU has no such option
};

// Every option, in the order of the README table. An option whose meaning
// differs between dump and restore has one row per side.
const std::vector<Option>& table();

// The row that answers NAME for VERB; nullptr when the option does nothing
// for that verb (CRIU takes every option with every command and ignores it).
const Option* lookup(const std::string& name, Verb verb);

// Why a value is wrong for the option ("" if it is fine).
std::string bad_value(const Option& o, const std::string& v);

// The parser's view of every option (each name once).
const std::vector<OptionSpec>& specs();

// Parses a process verb's command line as CRIU would: options in any order,
// CRIU's spellings, --config files read first. Fails (the message names the
// option) on an unknown option, a bad value, a positional argument, or an
// option cryo refuses for this verb.
std::optional<Args> parse_command_line(Verb verb, const std::vector<std::string>& argv, std::string* error);

// The log level -v, -vv, -v4, --verbosity and --verbosity=N ask for, counted
// from `level` (CRIU's default is 2: errors and warnings).
int verbosity(const Args& args, int level = 2);

// "1048576", "512K", "64M", "1G" -> bytes.
std::optional<uint64_t> parse_size(const std::string& text);

// `cryo VERB --help`.
std::string usage(Verb verb);

// The name of cryo's own probe (core/features.h) that answers CRIU's
// `check --feature NAME`, or nullopt when cryo does not probe it.
std::optional<std::string> probe_for_feature(const std::string& criu_name);
// Whether NAME is one of CRIU's `check --feature` names at all.
bool is_criu_feature(const std::string& criu_name);
// The CRIU names cryo answers, for `check --feature list`.
std::vector<std::string> answered_features();

}  // namespace cryo::cli::criu
