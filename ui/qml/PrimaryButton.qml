// The main action of a screen or dialog.
import QtQuick 2.15
import QtQuick.Controls 2.15
import "."

Button {
    id: button
    property color tint: Theme.brown
    property color textColour: "white"
    implicitHeight: 42
    font.pixelSize: Theme.fontNormal
    contentItem: Text {
        text: button.text
        font: button.font
        color: button.enabled ? button.textColour : "#CCCCCC"
        horizontalAlignment: Text.AlignHCenter
        verticalAlignment: Text.AlignVCenter
        elide: Text.ElideRight
    }
    background: Rectangle {
        radius: 4
        color: !button.enabled ? "#E8E8E8" : button.down ? Qt.darker(button.tint, 1.2) : button.tint
    }
}
