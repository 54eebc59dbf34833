// cryo.yaml: defaults for the process verbs' options, in YAML (the role
// CRIU's /etc/criu/default.conf and runc.conf play), for callers that pass
// few flags (Podman, containerd).
//
//   tcp-established: true        # a flag: true or false
//   manage-cgroups: full         # an option with a value
//   external: [mnt[/data]:data]  # a repeatable one: a list
//   dump:                        # only for one verb
//     leave-running: true
//
// Keys are CRIU's long option names. An unknown key, an option that takes
// no value given one (or the reverse), or a bad value fails, naming the file,
// the line and the key.
#pragma once

#include <string>
#include <vector>

#include "runtime/criu_options.h"

namespace cryo::cli::criu {

// The file read first by every process verb unless --no-default-config:
// $CRYO_CONFIG, else /etc/cryo/cryo.yaml; a missing file is no error.
std::string default_yaml_config();

// Appends the options the file sets for verb to words, as command-line
// words ("--tcp-established", "--manage-cgroups=full"). False with *error
// set on a bad file.
bool read_yaml_config(const std::string& path, Verb verb, std::vector<std::string>* words, std::string* error);

// Whether a --config file is YAML (by its name: .yaml or .yml).
bool is_yaml_config(const std::string& path);

}  // namespace cryo::cli::criu
