/* PNG row unfiltering (the PNG specification's filter types 0-4), in place: the reader of 16-bit PNGs
 * (pixzip/formats/pngio.py), which Pillow would truncate and pure Python (pypng) unfilters at about
 * 1.6 s a megapixel. pypng stays the reference: tests/test_png16.py compares the two on every filter. */
#include <stdint.h>

/* `buf` holds `h` rows of 1 + `rowbytes` bytes each (a filter type, then the row's filtered bytes), as
 * inflated from IDAT; each row's bytes become the unfiltered ones (the type bytes are left as they are).
 * `bpp`: bytes per complete pixel (at least 1). Returns 0, or -1 at a filter type above 4 (corruption). */
int pz_png_unfilter(uint8_t *buf, int64_t h, int64_t rowbytes, int bpp) {
    const uint8_t *prev = 0;
    for (int64_t r = 0; r < h; r++) {
        uint8_t *row = buf + r * (rowbytes + 1), *x = row + 1;
        int64_t i;
        switch (row[0]) {
        case 0:
            break;
        case 1:                                   /* Sub: the byte one pixel to the left */
            for (i = bpp; i < rowbytes; i++) x[i] = (uint8_t)(x[i] + x[i - bpp]);
            break;
        case 2:                                   /* Up: the byte above (none on the first row) */
            if (prev)
                for (i = 0; i < rowbytes; i++) x[i] = (uint8_t)(x[i] + prev[i]);
            break;
        case 3:                                   /* Average of left and above, rounded down */
            for (i = 0; i < rowbytes; i++) {
                int a = i >= bpp ? x[i - bpp] : 0, b = prev ? prev[i] : 0;
                x[i] = (uint8_t)(x[i] + ((a + b) >> 1));
            }
            break;
        case 4:                                   /* Paeth: left, above or above-left, nearest to a+b-c */
            for (i = 0; i < rowbytes; i++) {
                int a = i >= bpp ? x[i - bpp] : 0, b = prev ? prev[i] : 0;
                int c = prev && i >= bpp ? prev[i - bpp] : 0;
                int p = a + b - c, pa = p > a ? p - a : a - p, pb = p > b ? p - b : b - p, pc = p > c ? p - c : c - p;
                x[i] = (uint8_t)(x[i] + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c));
            }
            break;
        default:
            return -1;
        }
        prev = x;
    }
    return 0;
}
