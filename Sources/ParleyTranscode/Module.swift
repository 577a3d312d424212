/// ParleyTranscode: see ../shared/DESIGN.md for what this module owns.
public enum ParleyTranscodeModule {}
