// Nothing here but xxhash's own functions, inlined and static (XXH_INLINE_ALL):
// no inline function of another header may be compiled with -mavx2 in this
// file and then chosen by the linker for code that runs on any CPU.
#define XXH_INLINE_ALL
#define XXH_VECTOR XXH_AVX2
#include <xxhash.h>

#include "core/image/xxh3_avx2.h"

namespace cryo::image::avx2 {

uint64_t xxh3(const void* data, size_t size) { return XXH3_64bits(data, size); }
void* create_state() { return XXH3_createState(); }
void free_state(void* state) { XXH3_freeState(static_cast<XXH3_state_t*>(state)); }
void reset(void* state) { XXH3_64bits_reset(static_cast<XXH3_state_t*>(state)); }
void update(void* state, const void* data, size_t size) {
  XXH3_64bits_update(static_cast<XXH3_state_t*>(state), data, size);
}
uint64_t digest(const void* state) { return XXH3_64bits_digest(static_cast<const XXH3_state_t*>(state)); }

}  // namespace cryo::image::avx2
