/* edgefuse CUDA kernels: the C ABI shared by every stage — parameter structs, status codes, limits.
 *
 * Conventions (all stages):
 *   - every function takes a parameter struct (host memory), device pointers, and an explicit stream;
 *   - nothing is allocated in the hot path: a stage that needs scratch memory takes an explicit
 *     workspace pointer whose size comes from its ef_*_workspace_size() query;
 *   - every function returns an EfStatus (0 = EF_OK); launches are asynchronous on `stream`;
 *   - float32 data, int32 indices, row-major (C order) arrays; shapes are in the stage headers;
 *   - outputs are deterministic: no result depends on thread scheduling.
 * The numpy reference of every function is in edgefuse/engine/kernels.py (the oracle of the tests).
 */
#ifndef EF_COMMON_H
#define EF_COMMON_H

#include <stddef.h>
#include <cuda_runtime_api.h>

#if defined(_WIN32)
#define EF_API __declspec(dllexport)
#else
#define EF_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Bump when a struct layout or a signature changes (the Python loader checks it). */
#define EF_ABI_VERSION 1

#define EF_MAX_MODALITIES 4
#define EF_MAX_HEIGHTS 16

typedef enum EfStatus {
    EF_OK = 0,
    EF_ERR_NULL_POINTER = 1,     /* a required pointer is NULL */
    EF_ERR_BAD_PARAM = 2,        /* a parameter is out of range (sizes ≤ 0, too many modalities, ...) */
    EF_ERR_WORKSPACE = 3,        /* workspace smaller than the ef_*_workspace_size() query asks for */
    EF_ERR_CUDA = 4              /* a CUDA launch/memset failed (cudaGetLastError() tells which) */
} EfStatus;

/* Pillar voxelization (stage 1). Grid: half-open ranges [lo, hi) per axis, cells of pillar_size (dx, dy);
 * nx = cells along x, ny = cells along y (as edgefuse.tensors.PillarVoxelizer computes them). */
typedef struct EfVoxelizeParams {
    float lo[3];            /* x_min, y_min, z_min (m) */
    float hi[3];            /* x_max, y_max, z_max (m) */
    float pillar_size[2];   /* dx, dy (m) */
    int nx, ny;             /* grid columns (x) and rows (y) */
    int max_pillars;        /* P: output pillars */
    int max_points;         /* N: points kept per pillar */
    int num_features;       /* F: floats per point, x y z first */
} EfVoxelizeParams;

/* Pillar scatter (stage 2). */
typedef struct EfScatterParams {
    int num_pillars;        /* P: rows of coords/counts (padding included) */
    int channels;           /* C */
    int nx, ny;             /* BEV grid */
    int channels_first;     /* 0: features (P, C); 1: features (C, P) (the torch PillarEncoder layout) */
} EfScatterParams;

/* Camera → BEV lifting (stage 3a): each BEV cell centre at each height is projected into each camera. */
typedef struct EfCameraLiftParams {
    int nx, ny;             /* BEV grid: W (x) and H (y) cells */
    float origin_x, origin_y, cell; /* grid origin (x_min, y_min) m and square cell size m */
    int num_cameras;        /* Ncam */
    int channels;           /* C of the image feature maps */
    int feat_h, feat_w;     /* feature map size */
    int image_h, image_w;   /* size of the image the projection maps into (pixels) */
    int num_heights;        /* Z ≤ EF_MAX_HEIGHTS */
    float heights[EF_MAX_HEIGHTS]; /* z of the samples in base_link (m) */
    float min_depth;        /* samples with camera depth ≤ min_depth are invalid (the model: 0.1 m) */
} EfCameraLiftParams;

/* Gated fusion (stage 3b) of M modality BEV maps. */
typedef struct EfGatedFusionParams {
    int nx, ny;             /* BEV grid */
    int num_modalities;     /* M ≤ EF_MAX_MODALITIES */
    int channels[EF_MAX_MODALITIES]; /* C_m of each modality */
    int out_channels;       /* Cout */
    int gate_kernel;        /* odd k of the gate conv (1 or 3 …), zero padding k/2 */
    float gate_eps;         /* added to the sigmoid gates before masking (the model: 1e-3) */
} EfGatedFusionParams;

/* Human-readable name of a status code (static string). */
EF_API const char* ef_status_string(int status);
/* EF_ABI_VERSION of the compiled library. */
EF_API int ef_abi_version(void);

#ifdef __cplusplus
}
#endif

#endif /* EF_COMMON_H */
