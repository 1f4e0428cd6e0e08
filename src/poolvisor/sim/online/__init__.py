"""Online packing on real traces: a fixed fleet, arrivals and departures, one policy at a time."""
