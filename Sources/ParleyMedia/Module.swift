/// ParleyMedia: see ../shared/DESIGN.md for what this module owns.
public enum ParleyMediaModule {}
