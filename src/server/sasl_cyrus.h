#pragma once
// Cyrus SASL behind protocol::SaslProvider, configured the way memcached
// configures it (memcached's sasl_defs.c):
//
// - MEMCACHED_SASL_PWDB=<file>: a password file of `user:password` lines
//   (extra `:fields` after the password are ignored). Checked on every
//   authentication, so edits take effect without a restart. With it the
//   PLAIN mechanism is offered (the only one a cleartext check can serve).
// - otherwise Cyrus' own configuration: SASL_CONF_PATH names the directory
//   (or, as memcached accepts, the file) holding memcached.conf, else
//   /etc/sasl/memcached.conf or /etc/sasl2/memcached.conf; it can name a
//   sasldb (`sasldb_path: ...`, users made with `saslpasswd2 -a memcached`)
//   and the mechanisms (`mech_list: plain`).
//
// The application name Cyrus sees is "memcached", so existing memcached SASL
// setups work unchanged.

#include <memory>
#include <string>

#include "protocol/sasl.h"

namespace memkeep::server {

// Initializes Cyrus SASL once for the process. Null with `error` set when it
// cannot be initialized (the server then exits at start).
std::unique_ptr<protocol::SaslProvider> make_cyrus_sasl(int verbosity, std::string* error);

}  // namespace memkeep::server
