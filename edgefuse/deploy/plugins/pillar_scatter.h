/* Stage 2: pillar scatter to the BEV grid.
 *
 * features (P, C) float32 (or (C, P) when params.channels_first), coords (P, 2) int32 (iy, ix),
 * counts (P,) int32  →  bev (C, ny, nx) float32, fully written: a cell holds the features of the pillar
 * scattered there and 0 elsewhere. A pillar is scattered when counts[p] > 0 and its (iy, ix) lies in the
 * grid; other rows are padding and ignored. Duplicate cells (not produced by the voxelizer): the pillar
 * with the highest index wins ("last wins", as a sequential loop would do), deterministically.
 */
#ifndef EF_PILLAR_SCATTER_H
#define EF_PILLAR_SCATTER_H

#include "ef_common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes of workspace (one int per grid cell; 0 on bad params). */
EF_API size_t ef_pillar_scatter_workspace_size(const EfScatterParams* params);

EF_API int ef_pillar_scatter(const EfScatterParams* params, const float* features, const int* coords,
                             const int* counts, float* bev, void* workspace, size_t workspace_size,
                             cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
