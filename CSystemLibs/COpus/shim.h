#include <opus/opus.h>

// opus_encoder_ctl is variadic; Swift cannot call it.
static inline int parley_opus_set_bitrate(OpusEncoder *e, opus_int32 bps) { return opus_encoder_ctl(e, OPUS_SET_BITRATE(bps)); }
static inline opus_int32 parley_opus_get_lookahead(OpusEncoder *e) {
    opus_int32 v = 0;
    opus_encoder_ctl(e, OPUS_GET_LOOKAHEAD(&v));
    return v;
}
