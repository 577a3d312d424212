#ifndef PARLEY_CFFMPEG_SHIM_H
#define PARLEY_CFFMPEG_SHIM_H
#include <libavformat/avformat.h>
#include <libavcodec/avcodec.h>
#include <libavutil/avutil.h>
#include <libavutil/opt.h>
#include <libavutil/imgutils.h>
#include <libavutil/channel_layout.h>
#include <libavutil/error.h>
#include <libavutil/audio_fifo.h>
#include <libavutil/display.h>
#include <libswscale/swscale.h>
#include <libswresample/swresample.h>
#include <libavfilter/avfilter.h>
#include <libavfilter/buffersrc.h>
#include <libavfilter/buffersink.h>

// Macros Swift cannot import.
static inline int parley_averror(int e) { return AVERROR(e); }
static inline int parley_averror_eof(void) { return AVERROR_EOF; }
static inline int parley_averror_eagain(void) { return AVERROR(EAGAIN); }
static inline int64_t parley_av_nopts_value(void) { return AV_NOPTS_VALUE; }
static inline AVRational parley_av_time_base_q(void) { return AV_TIME_BASE_Q; }
static inline const char *parley_av_err2str(int e, char *buf, size_t size) {
    av_make_error_string(buf, size, e);
    return buf;
}
#endif
