"""Simulated hardware and crews: GNSS routes as NMEA bytes, virtual units, fleets."""
