// The options that name a page server and its TLS (CRIU's spellings:
// --address, --port, --tls, --tls-cacert, --tls-cert, --tls-key,
// --tls-no-cn-verify), shared by dump, page-server and lazy-pages.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/pageserver/channel.h"
#include "runtime/args.h"

namespace cryo::cli {

// Parses the options of page-server and lazy-pages (any of CRIU's, as CRIU
// takes every option with every command; `-v N` as CRIU's verbs take it).
std::optional<Args> parse_page_command(const char* verb, const std::vector<std::string>& argv, std::string* error);

// The endpoint ARGS names; *error is set (and the result meaningless) when
// a value is wrong. need_address: connecting needs one, listening does not.
pageserver::Endpoint page_endpoint(const Args& args, bool need_address, std::string* error);

// --status-fd N: one zero byte, then closed, once the command is ready
// (CRIU's convention for page-server and lazy-pages).
void report_ready(const Args& args);

}  // namespace cryo::cli
