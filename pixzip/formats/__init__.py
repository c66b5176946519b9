"""The file formats, torch-free: the .pxz container, the .pxm model file's bytes, the images read and
written, and the tile grid with its coding order that a container's streams follow."""
