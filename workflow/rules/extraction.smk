# Environmental values from the rasters and patch caches (see geolifeclef.environment,
# geolifeclef.patch_cache).
