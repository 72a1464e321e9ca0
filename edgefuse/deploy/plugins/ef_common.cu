// Library-wide helpers of the C ABI (ef_common.h).
#include "ef_common.h"

extern "C" EF_API const char* ef_status_string(int status) {
    switch (status) {
        case EF_OK: return "ok";
        case EF_ERR_NULL_POINTER: return "a required pointer is NULL";
        case EF_ERR_BAD_PARAM: return "a parameter is out of range";
        case EF_ERR_WORKSPACE: return "workspace smaller than the ef_*_workspace_size() query";
        case EF_ERR_CUDA: return "CUDA launch failed (see cudaGetLastError)";
        default: return "unknown status";
    }
}

extern "C" EF_API int ef_abi_version(void) { return EF_ABI_VERSION; }
