import ParleyRelay

extension Recording {
    /// The relay tap (`Relay.setTap`) that feeds this recording from a
    /// room, on the room's loop: each forwarded RTP packet and each
    /// sender-report compound is copied into the recorder's queue with its
    /// wall-clock arrival (a packet's is its receive batch's) (never a wait: a full queue drops it from the
    /// recording and counts it), a published track is added before its
    /// first packet, joins, leaves, unpublishes and mutes go to
    /// `events.log`, and the room closing stops the recording.
    public var relayTap: RTPTap {
        RTPTap({ [self] ssrc, _, bytes, arrival in
            captureRTP(ssrc: ssrc, bytes, arrivalNanos: arrival)
        }, senderReport: { [self] ssrc, bytes in
            captureRTCP(ssrc: ssrc, bytes, arrivalNanos: wallClockNanos())
        }, event: { [self] e in
            switch e {
            case .joined(let p): note(RecordingEvent(.join, participant: p))
            case .left(let p): note(RecordingEvent(.leave, participant: p))
            case .published(let t): add(t)  // writes its track_added event
            case .unpublished(let t): note(RecordingEvent(.trackRemoved, participant: t.participant, track: t.id))
            case .muteChanged(let t): note(RecordingEvent(t.muted ? .mute : .unmute, participant: t.participant, track: t.id))
            case .closed: stop()
            }
        })
    }
}
