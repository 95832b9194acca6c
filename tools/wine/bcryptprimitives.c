/* bcryptprimitives.dll for the Wine 8.0 build prefix: Rust's std (pydantic-core, watchfiles) imports
 * ProcessPrng, which Wine added only in 9.x. Same contract: fill the buffer, always TRUE. */
#include <windows.h>
#include <ntsecapi.h>

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T size) { return RtlGenRandom(data, (ULONG)size); }
