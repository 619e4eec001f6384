// loom config keys: every config key with its default and allowed values, from the one declaration
// in runtime/core/config.cpp (docs/configuration.md adds what each means).
#include <cstdio>

#include "launch/commands.h"
#include "runtime/core/config.h"

namespace loom {

int run_config_keys() {
  std::printf("| key | default | allowed |\n| --- | --- | --- |\n");
  for (const KeyInfo& k : describe_keys())
    std::printf("| `%s` | `%s` | %s |\n", k.key.c_str(), k.default_value.c_str(), k.allowed.c_str());
  return 0;
}

}  // namespace loom
