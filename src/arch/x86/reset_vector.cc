// The reset-vector stub.
#include "arch/x86/reset_vector.h"

#include <cstdint>

namespace kdom::x86 {

void write_reset_vector_stub(const GuestMemory& memory) {
  const uint8_t stub[] = {
      0xb0, 0xfe,  // mov al, 0xfe
      0xe6, 0x64,  // out 0x64, al   (i8042: pulse reset)
      0xfa,        // cli
      0xf4,        // hlt
      0xeb, 0xfd,  // jmp hlt
  };
  memory.write(kResetVectorAddress, stub, sizeof(stub));
}

}  // namespace kdom::x86
